//! The load generator: closed-loop virtual users, each on its own
//! keep-alive connection, playing their [`UserScript`] against the
//! scheduler and recording every call.
//!
//! As the script's three `constant-vus` scenarios with `gracefulStop: 0s`:
//! when a phase ends, every user's call in flight is cut (recorded as cut,
//! neither completed nor failed) and its think time ended; the users of the
//! next phase, the earlier ones among them, start afresh at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::emulator::model::Cold;
use crate::http::{self, Conn};
use crate::load::workload::{joining_phase, UserScript, PAYLOAD, PHASE_VUS};
use crate::rng::WeightedChoice;
use crate::scale::{Clock, TimeScale};

/// A call gets at least this long, in real time, before it counts as failed.
const MIN_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and at least this long at paper scale (k6's default request timeout).
const TIMEOUT_PAPER_MS: f64 = 60_000.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scheduler, `host:port`.
    pub target: String,
    /// Function names.
    pub functions: Vec<String>,
    /// Each virtual user's choice over `functions` (its own sample).
    pub choices: Vec<WeightedChoice>,
    /// Length of each phase, paper-scale ms.
    pub phase_ms: f64,
    pub scale: TimeScale,
    pub seed: u64,
}

/// One call as the client saw it. Times are paper-scale ms; `start_ms`
/// counts from the start of the run.
#[derive(Debug, Clone)]
pub struct Call {
    pub vu: usize,
    pub function: usize,
    pub start_ms: f64,
    pub latency_ms: f64,
    /// The answer's status; 0 if there was none (connection failure, timeout).
    pub status: u16,
    pub cold: Option<bool>,
    /// Why it started cold, as the emulator says.
    pub cold_cause: Option<Cold>,
    pub worker: Option<String>,
    pub service_ms: Option<f64>,
    /// In flight when its phase ended: cut, as k6 cuts it (`gracefulStop:
    /// 0s`), and counted neither as completed nor as failed.
    pub cut: bool,
}

impl Call {
    /// Completed: a 200 from a worker that says where and how it ran.
    pub fn completed(&self) -> bool {
        self.status == 200 && self.cold.is_some() && self.worker.is_some() && self.service_ms.is_some()
    }
}

/// Counters a progress display can read while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

/// Runs every phase to the end and returns the calls, ordered by start.
/// Calls in flight when a phase ends are cut.
pub async fn run(plan: Arc<Plan>, progress: Arc<Progress>) -> Vec<Call> {
    let clock = Clock::new(plan.scale);
    let users = PHASE_VUS[PHASE_VUS.len() - 1];
    let tasks: Vec<_> = (0..users).map(|vu| tokio::spawn(user(plan.clone(), clock, vu, progress.clone()))).collect();
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.expect("a virtual user panicked"));
    }
    calls.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    calls
}

async fn user(plan: Arc<Plan>, clock: Clock, vu: usize, progress: Arc<Progress>) -> Vec<Call> {
    let timeout = plan.scale.real(TIMEOUT_PAPER_MS).max(MIN_TIMEOUT);
    let mut script = UserScript::new(plan.seed, vu);
    let mut conn: Option<Conn<TcpStream>> = None;
    let mut calls = Vec::new();
    for phase in joining_phase(vu)..PHASE_VUS.len() {
        let phase_end = clock.instant_at(plan.phase_ms * (phase + 1) as f64);
        tokio::time::sleep_until(clock.instant_at(plan.phase_ms * phase as f64).into()).await;
        while Instant::now() < phase_end {
            let (function, think_ms) = script.next(&plan.choices[vu]);
            let start_ms = clock.now_ms();
            let started = Instant::now();
            let answer = tokio::time::timeout(timeout, call(&plan, &plan.functions[function], &mut conn));
            let Ok(answer) = tokio::time::timeout_at(phase_end.into(), answer).await else {
                // The phase ended: the call is cut, its connection dropped.
                let latency_ms = plan.scale.paper_ms(started.elapsed());
                calls.push(Call { cut: true, ..Call::new(vu, function, start_ms, latency_ms) });
                conn = None;
                break;
            };
            let latency_ms = plan.scale.paper_ms(started.elapsed());
            let record = record(Call::new(vu, function, start_ms, latency_ms), answer, &mut conn);
            let counter = if record.completed() { &progress.completed } else { &progress.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            calls.push(record);
            let _ = tokio::time::timeout_at(phase_end.into(), tokio::time::sleep(plan.scale.real(think_ms))).await;
        }
    }
    calls
}

impl Call {
    fn new(vu: usize, function: usize, start_ms: f64, latency_ms: f64) -> Call {
        let (status, cold, cold_cause, worker, service_ms) = (0, None, None, None, None);
        Call { vu, function, start_ms, latency_ms, status, cold, cold_cause, worker, service_ms, cut: false }
    }
}

/// A call's answer: the response, an I/O error, or no answer in time.
type Answer = Result<std::io::Result<http::Response>, tokio::time::error::Elapsed>;

/// What an emulated worker's answer says in its body: whether the call
/// started cold and why, and its service time (as its hint headers do, when
/// it sends them; the body is there either way).
#[derive(serde::Deserialize)]
struct Ran {
    cold: bool,
    cold_cause: Option<String>,
    service_ms: f64,
}

/// `record` with what the answer said; drops the connection if it cannot
/// carry another call.
fn record(mut record: Call, answer: Answer, conn: &mut Option<Conn<TcpStream>>) -> Call {
    match answer {
        Ok(Ok(response)) => {
            record.status = response.status;
            record.worker = response.header("X-Worker").map(str::to_string);
            if let Ok(ran) = serde_json::from_slice::<Ran>(&response.body) {
                record.cold = Some(ran.cold);
                record.cold_cause = ran.cold_cause.as_deref().and_then(Cold::parse);
                record.service_ms = Some(ran.service_ms);
            }
            if !response.keep_alive {
                *conn = None;
            }
        }
        // The connection is in an unknown state: start afresh.
        Ok(Err(_)) | Err(_) => *conn = None,
    }
    record
}

/// One POST on the user's connection, opened first if there is none.
async fn call(plan: &Plan, function: &str, conn: &mut Option<Conn<TcpStream>>) -> std::io::Result<http::Response> {
    if conn.is_none() {
        let stream = TcpStream::connect(&plan.target).await?;
        stream.set_nodelay(true)?;
        *conn = Some(Conn::new(stream));
    }
    let conn = conn.as_mut().expect("just opened");
    conn.write_all(&http::post_json(&plan.target, &format!("/run/{function}"), PAYLOAD, true)).await?;
    conn.read_response().await
}
