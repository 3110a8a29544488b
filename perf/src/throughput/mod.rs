//! `perf/throughput`: the proxy's own cost. For each round, each
//! connection count and each contender, fresh processes: two trivial
//! upstreams ([`upstream`], in their own process), the contender in front
//! of them (or nothing, for `direct`), and the generator ([`blast`], on its
//! own thread) at full speed against it. Each measurement reads the
//! contender's CPU time at the window's edges and its peak memory at the
//! end, then keeps the load going for a second, counted window in which
//! [`counters`] reads what the kernel did (system calls, context switches,
//! reschedule IPIs: tracing them slows the process down, so not in the
//! measured window); [`summary`] takes the medians.

pub mod blast;
pub mod counters;
pub mod idle;
pub mod summary;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Child;

use self::blast::{Load, Mark, Tally};
use self::counters::{Counts, PerfStat};
use self::summary::{Row, Sample};
use crate::functions;
use crate::harness::cluster::{self, start_upstreams};
use crate::harness::process::{self, free_port, START_DEADLINE};
use crate::harness::procstat;
use crate::harness::workdir::WorkDir;

/// The body of every request.
pub const BODY: &[u8] = br#"{"param0": "value0"}"#;
/// Upstream servers behind every contender.
pub const UPSTREAMS: usize = 2;
/// A request unanswered this long is an error (wrk's default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// nginx's keep-alive pool per worker process.
const NGINX_KEEPALIVE: usize = 256;

/// What stands between the generator and the upstreams.
#[derive(Debug, Clone)]
pub enum Proxy {
    /// Nothing: the generator's connections alternate between the upstreams.
    Direct,
    /// A binary with the Go original's `start -c <config>` interface, with
    /// arguments after it (hiku's `--cores`) and variables added to its
    /// environment.
    Scheduler { binary: PathBuf, extra: Vec<String>, env: Vec<(String, String)> },
    /// nginx as a least-connections keep-alive reverse proxy.
    Nginx { binary: PathBuf },
    /// HAProxy (2.6+) the same way: a thread per core, least connections,
    /// keep-alive on both sides, idle server connections shared by all.
    Haproxy { binary: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    pub proxy: Proxy,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub contenders: Vec<Contender>,
    pub upstream: PathBuf,
    /// The balancer in the schedulers' config.
    pub balancer: String,
    /// Cores for the proxy: nginx's worker processes (hiku gets `--cores` in
    /// its `extra`).
    pub cores: usize,
    pub connections: Vec<usize>,
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The counted window after the measured one (zero for none).
    pub counted: Duration,
    /// A `perf` that can trace system calls here, or `None` (those
    /// columns are then missing).
    pub perf: Option<PathBuf>,
    /// A new connection for every call (`Connection: close` on each).
    pub new_connection: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Every round, in which every contender is measured at every connection
/// count; the medians.
pub async fn run(options: &Options) -> Result<Vec<Row>, String> {
    let workdir = WorkDir::new()?;
    let mut samples = Vec::new();
    for round in 1..=options.rounds {
        for &connections in &options.connections {
            for contender in &options.contenders {
                let sample = measure(options, contender, connections, &workdir.0).await?;
                if options.progress {
                    eprintln!(
                        "[round {round}/{}] {:<12} {connections:>5} conns: {:>8.0} req/s  p99 {:.2} ms  {} errors  \
                         {:.4} cpu s/1k  {:.1} MB",
                        options.rounds,
                        contender.label,
                        sample.rps,
                        sample.p99_ms,
                        sample.errors,
                        sample.cpu_s_per_1k,
                        sample.peak_rss_mb
                    );
                }
                samples.push(sample);
            }
        }
    }
    Ok(summary::summarize(&samples))
}

/// A `--variant`: hiku run with variables added to its environment and
/// arguments after `start -c <config>`, under a label of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub label: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Parses `LABEL=[NAME=VALUE...] [ARG...]`.
pub fn parse_variant(spec: &str) -> Result<Variant, String> {
    let (label, rest) = spec.split_once('=').ok_or_else(|| format!("--variant {spec:?} is not LABEL=ARGS"))?;
    if label.is_empty()
        || label.contains(char::is_whitespace)
        || ["direct", "hiku", "nginx", "haproxy"].contains(&label)
    {
        return Err(format!("--variant {spec:?}: its label must be a new word, not {label:?}"));
    }
    let is_name = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut words = rest.split_whitespace().peekable();
    let mut env = Vec::new();
    while let Some((name, value)) = words.peek().and_then(|w| w.split_once('=')).filter(|(n, _)| is_name(n)) {
        env.push((name.to_string(), value.to_string()));
        words.next();
    }
    Ok(Variant { label: label.to_string(), args: words.map(str::to_string).collect(), env })
}

/// The processes of one measurement; all are killed when this drops.
pub(crate) struct Setup {
    _upstreams: Child,
    _proxy: Option<Running>,
    /// Where the generator connects.
    pub targets: Vec<SocketAddr>,
    /// Whose CPU and memory are counted.
    pub pids: Vec<u32>,
}

/// Held only to be dropped (which kills it).
enum Running {
    Scheduler { _process: cluster::Scheduler },
    Nginx { _process: Nginx },
    Haproxy { _process: Child },
}

async fn measure(
    options: &Options,
    contender: &Contender,
    connections: usize,
    workdir: &Path,
) -> Result<Sample, String> {
    let setup = start(options, contender, workdir).await?;
    let load = Load {
        targets: setup.targets.clone(),
        connections,
        functions: functions::names(),
        body: BODY.to_vec(),
        warmup: options.warmup,
        duration: options.duration,
        counted: options.counted,
        close: options.new_connection,
        timeout: REQUEST_TIMEOUT,
    };
    let perf = match &options.perf {
        Some(perf) => Some(PerfStat::attach(perf, &setup.pids, workdir)?),
        None => None,
    };
    let (tally, cpu, counts) = generate(load, setup.pids.clone(), perf).await?;
    let peak_rss_mb = procstat::peak_rss_mb(&setup.pids);
    drop(setup);
    let cpu_s = match cpu.as_slice() {
        [start, end] => end - start,
        _ => f64::NAN,
    };
    let per_request = |count: Option<u64>| match tally.counted_ok {
        0 => None,
        n => count.map(|c| c as f64 / n as f64),
    };
    if options.progress && tally.errors.total() > 0 {
        eprintln!("{} at {connections} connections: errors {:?}", contender.label, tally.errors);
    }
    Ok(Sample {
        contender: contender.label.clone(),
        connections,
        rps: tally.rps(),
        p50_ms: tally.latency_ms(0.5),
        p99_ms: tally.latency_ms(0.99),
        p999_ms: tally.latency_ms(0.999),
        errors: tally.errors.total(),
        cpu_s_per_1k: cpu_s / (tally.ok as f64 / 1000.0),
        peak_rss_mb,
        syscalls_per_request: per_request(counts.syscalls),
        context_switches_per_request: per_request(counts.context_switches),
        reschedule_ipis_per_request: per_request(counts.reschedule_ipis),
    })
}

/// Sets the flag when dropped: the generator stops if the measurement is
/// abandoned (Ctrl-C, an error elsewhere).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the generator on its own thread; the CPU seconds of `pids` at the
/// window's start and end, and what the kernel did in the counted window
/// (by `perf`, when given), come back with its tally.
async fn generate(load: Load, pids: Vec<u32>, perf: Option<PerfStat>) -> Result<(Tally, Vec<f64>, Counts), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("blast".to_string())
        .spawn(move || {
            let mut perf = perf;
            let mut cpu = Vec::new();
            let mut ipis = Vec::new();
            let mut perf_error = None;
            let tally = blast::run(&load, &stop, |mark: Mark| match mark {
                Mark::WindowStart | Mark::WindowEnd => cpu.push(procstat::cpu_seconds(&pids)),
                Mark::CountStart => {
                    ipis.push(counters::reschedule_ipis());
                    if let Some(Err(e)) = perf.as_mut().map(PerfStat::enable) {
                        perf_error = Some(e);
                    }
                }
                Mark::CountEnd => {
                    if let Some(Err(e)) = perf.as_mut().map(PerfStat::disable) {
                        perf_error = Some(e);
                    }
                    ipis.push(counters::reschedule_ipis());
                }
            });
            let (syscalls, context_switches) = match (perf, perf_error) {
                (Some(perf), None) => perf.finish(),
                (_, Some(e)) => {
                    eprintln!("{e}: system calls and context switches not counted");
                    (None, None)
                }
                (None, None) => (None, None),
            };
            let reschedule_ipis = match ipis.as_slice() {
                [Some(start), Some(end)] => end.checked_sub(*start),
                _ => None,
            };
            let counts = Counts { syscalls, context_switches, reschedule_ipis };
            let _ = send.send(tally.map(|t| (t, cpu, counts)));
        })
        .map_err(|e| format!("starting the generator: {e}"))?;
    receive.await.map_err(|_| "the generator panicked".to_string())?.map_err(|e| format!("the generator failed: {e}"))
}

/// Starts the upstreams and `contender` in front of them.
pub(crate) async fn start(options: &Options, contender: &Contender, workdir: &Path) -> Result<Setup, String> {
    let (upstreams, urls) = start_upstreams(&options.upstream, UPSTREAMS, 0).await?;
    let upstream_pid = upstreams.id().ok_or("the upstreams exited")?;
    let addresses: Vec<SocketAddr> = urls
        .iter()
        .map(|u| crate::http::authority(u).and_then(|a| a.parse().ok()).ok_or_else(|| format!("bad upstream {u}")))
        .collect::<Result<_, _>>()?;
    let (proxy, targets, pids) = match &contender.proxy {
        Proxy::Direct => (None, addresses, vec![upstream_pid]),
        Proxy::Scheduler { binary, extra, env } => {
            let port = free_port()?;
            let config = workdir.join(format!("{}.json", contender.label));
            let json =
                serde_json::json!({"host": "127.0.0.1", "port": port, "balancer": options.balancer, "workers": urls});
            std::fs::write(&config, json.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
            let log = workdir.join(format!("{}.log", contender.label));
            let address = format!("127.0.0.1:{port}");
            let scheduler = cluster::start_scheduler(binary, &config, extra, env, &address, &log).await?;
            let pid = scheduler.pid().ok_or_else(|| format!("{} exited", contender.label))?;
            let target = address.parse().expect("an address");
            (Some(Running::Scheduler { _process: scheduler }), vec![target], vec![pid])
        }
        Proxy::Nginx { binary } => {
            let nginx = start_nginx(binary, &addresses, options.cores, workdir).await?;
            let pids = nginx.pids();
            let target = nginx.address;
            (Some(Running::Nginx { _process: nginx }), vec![target], pids)
        }
        Proxy::Haproxy { binary } => {
            let (haproxy, target) = start_haproxy(binary, &addresses, options.cores, workdir).await?;
            let pid = haproxy.id().ok_or("haproxy exited")?;
            (Some(Running::Haproxy { _process: haproxy }), vec![target], vec![pid])
        }
    };
    Ok(Setup { _upstreams: upstreams, _proxy: proxy, targets, pids })
}

/// A running nginx: its master and worker processes. The workers are not
/// our children and outlive a killed master, so they are killed by pid.
struct Nginx {
    master: Child,
    /// Its process group (the master's pid).
    group: u32,
    workers: Vec<u32>,
    address: SocketAddr,
}

impl Nginx {
    fn pids(&self) -> Vec<u32> {
        self.master.id().into_iter().chain(self.workers.iter().copied()).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The whole process group the master leads: every worker, listed
        // or not (a worker started after the listing, or one left behind by
        // a master that already exited, would outlive it otherwise).
        // SAFETY: kill(2) on the group of the master we started as its leader.
        unsafe { libc::kill(-(self.group as libc::pid_t), libc::SIGKILL) };
        let _ = self.master.start_kill();
    }
}

/// nginx's configuration: `cores` workers, least connections over the
/// upstreams with a keep-alive pool, everything it writes in `dir`.
pub fn nginx_config(upstreams: &[SocketAddr], port: u16, cores: usize, dir: &Path) -> String {
    let dir = dir.display();
    let servers: String = upstreams.iter().map(|a| format!("        server {a};\n")).collect();
    format!(
        "worker_processes {cores};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream workers {{
        least_conn;
{servers}        keepalive {NGINX_KEEPALIVE};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

/// HAProxy's configuration, as fair as nginx's: `cores` threads (as nginx
/// has worker processes), least connections over the upstreams, keep-alive
/// to clients and to the upstreams with idle server connections shared by
/// every thread and client (`http-reuse always`), no logging.
pub fn haproxy_config(upstreams: &[SocketAddr], port: u16, cores: usize) -> String {
    let servers: String =
        upstreams.iter().enumerate().map(|(i, a)| format!("    server upstream{i} {a} maxconn 100000\n")).collect();
    format!(
        "global
    nbthread {cores}
    maxconn 100000
    # Run within the open-file limit this machine allows (as nginx and
    # hiku do) rather than refuse to start for a maxconn it could not
    # reach anyway.
    no strict-limits

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    maxconn 100000

frontend proxy
    bind 127.0.0.1:{port} backlog 4096
    default_backend upstreams

backend upstreams
    balance leastconn
{servers}"
    )
}

/// Starts HAProxy in the foreground (one process, its threads) on a free
/// port, once it listens.
async fn start_haproxy(
    binary: &Path,
    upstreams: &[SocketAddr],
    cores: usize,
    workdir: &Path,
) -> Result<(Child, SocketAddr), String> {
    let port = free_port()?;
    let config = workdir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(&config, haproxy_config(upstreams, port, cores))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let log = workdir.join(format!("haproxy-{port}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut haproxy = process::command(binary)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = haproxy.try_wait() {
            return Err(format!("haproxy exited ({status}) before listening:\n{}", process::tail(&log)));
        }
        if TcpStream::connect(address).await.is_ok() {
            return Ok((haproxy, address));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("haproxy did not listen on {address} within {START_DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the proxies among `contenders` are configured, as each measurement
/// writes it (with its own ports and directory): (label, text).
pub fn proxy_configs(contenders: &[Contender], upstreams: usize, cores: usize) -> Vec<(String, String)> {
    let upstreams: Vec<SocketAddr> =
        (0..upstreams).map(|i| SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16))).collect();
    contenders
        .iter()
        .filter_map(|c| {
            match &c.proxy {
                Proxy::Nginx { .. } => Some(nginx_config(&upstreams, 9020, cores, Path::new("DIR"))),
                Proxy::Haproxy { .. } => Some(haproxy_config(&upstreams, 9020, cores)),
                Proxy::Direct | Proxy::Scheduler { .. } => None,
            }
            .map(|text| (c.label.clone(), text))
        })
        .collect()
}

async fn start_nginx(binary: &Path, upstreams: &[SocketAddr], cores: usize, workdir: &Path) -> Result<Nginx, String> {
    let port = free_port()?;
    let dir = workdir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(upstreams, port, cores, &dir))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let log = dir.join("stderr.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    // On our death the master gets SIGTERM, and stops its workers itself.
    let master = process::command_dying_with(binary, libc::SIGTERM)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&config)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let group = master.id().ok_or("nginx exited at once")?;
    let mut nginx = Nginx { master, group, workers: Vec::new(), address };
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = nginx.master.try_wait() {
            let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!("nginx exited ({status}) before listening:\n{}{errors}", process::tail(&log)));
        }
        let master = nginx.master.id().unwrap_or(0);
        nginx.workers = procstat::children(master);
        if nginx.workers.len() >= cores && TcpStream::connect(address).await.is_ok() {
            return Ok(nginx);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("nginx did not start {cores} workers on {address} within {START_DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_a_label_variables_and_arguments() {
        let variant = |label: &str, args: &[&str], env: &[(&str, &str)]| Variant {
            label: label.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(parse_variant("hiku-epoll=HIKU_IO=epoll"), Ok(variant("hiku-epoll", &[], &[("HIKU_IO", "epoll")])));
        assert_eq!(parse_variant("unpinned=--no-pin"), Ok(variant("unpinned", &["--no-pin"], &[])));
        assert_eq!(
            parse_variant("x=A=1 B_2=two --cores 1 C=3"),
            Ok(variant("x", &["--cores", "1", "C=3"], &[("A", "1"), ("B_2", "two")]))
        );
        assert_eq!(parse_variant("plain="), Ok(variant("plain", &[], &[])));
        for bad in ["no-equals", "=--no-pin", "hiku=--no-pin", "a b=x"] {
            assert!(parse_variant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn haproxy_is_configured_as_fairly_as_nginx() {
        let upstreams: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap(), "127.0.0.1:5001".parse().unwrap()];
        let config = haproxy_config(&upstreams, 9020, 2);
        for line in [
            "nbthread 2",
            "mode http",
            "option http-keep-alive",
            "http-reuse always",
            "bind 127.0.0.1:9020 backlog 4096",
            "balance leastconn\n    server upstream0 127.0.0.1:5000 maxconn 100000\n    server upstream1 127.0.0.1:5001",
        ] {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
        assert!(!config.lines().any(|l| l.trim_start().starts_with("log")), "no logging:\n{config}");
    }

    #[test]
    fn nginx_is_configured_as_a_least_connections_keep_alive_proxy() {
        let upstreams: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap(), "127.0.0.1:5001".parse().unwrap()];
        let config = nginx_config(&upstreams, 9020, 2, Path::new("/tmp/x"));
        for line in [
            "worker_processes 2;",
            "daemon off;",
            "pid /tmp/x/nginx.pid;",
            "        least_conn;\n        server 127.0.0.1:5000;\n        server 127.0.0.1:5001;\n        keepalive 256;",
            "listen 127.0.0.1:9020 backlog=4096;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log off;",
        ] {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
    }
}
