//! The decision cost of each balancer: one select and its release (and,
//! for a balancer that learns from answers, what it learns from one), at
//! cluster sizes from the paper's (5 workers, 40 functions) up; and what a
//! call's end costs the worker's adaptive limit (its function's baseline,
//! the window's sums, now and then the next limit).
//!
//! `cargo bench --bench select`; ids are `select/<balancer>/<W>w-<F>f` and
//! `call_end/adaptive/<W>w-<F>f`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hiku::{Answer, BalancerKind, Outcome};
use hiku::{CallEnd, Scheduler, Tuning, WorkerUrl};

const SIZES: [(usize, usize); 3] = [(5, 40), (100, 10_000), (1000, 100_000)];

fn scheduler(kind: BalancerKind, workers: usize) -> Scheduler {
    let urls = (0..workers)
        .map(|i| (WorkerUrl::parse(&format!("http://10.0.{}.{}:8080", i / 250, i % 250 + 1)).unwrap(), Vec::new()))
        .collect();
    Scheduler::new(kind, urls)
}

/// Function names in a scattered order (a fixed-seed shuffle), as requests
/// for many functions arrive.
fn functions(n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut names: Vec<String> = (0..n).map(|i| format!("function-{i}")).collect();
    rng.shuffle(&mut names);
    names
}

fn select(c: &mut Criterion) {
    // As a shard does: the function table's pins nest in a held one.
    hiku::hold_epoch();
    let mut group = c.benchmark_group("select");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for kind in BalancerKind::ALL {
        for (w, f) in SIZES {
            let s = scheduler(kind, w);
            let names = functions(f);
            // A warm answer, as an OpenLambda worker emulated by perf/ says it.
            let answer = Answer {
                sent_at: std::time::Instant::now(),
                elapsed: Duration::from_millis(100),
                cold: Some(false),
                service_ms: Some(99.0),
            };
            let learns = s.learns();
            // Warm: every function has been seen once (pull-based queues exist).
            for name in &names {
                let lease = s.select(name).unwrap();
                if learns {
                    s.observe(name, &lease, answer);
                }
                s.release(name, lease, Outcome::Completed);
            }
            let mut i = 0;
            group.bench_function(format!("{}/{w}w-{f}f", kind.name()), |b| {
                b.iter(|| {
                    let name = &names[i];
                    i = if i + 1 == names.len() { 0 } else { i + 1 };
                    let lease = s.select(black_box(name)).unwrap();
                    if learns {
                        s.observe(name, &lease, black_box(answer));
                    }
                    s.release(name, black_box(lease), Outcome::Completed);
                })
            });
            hiku::repin_epoch();
        }
    }
    group.finish();
}

fn call_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_end");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for (w, f) in SIZES {
        let s = scheduler(BalancerKind::PullBased, w);
        s.set_adaptive(Some(Tuning::default()));
        let names = functions(f);
        let leases: Vec<_> = (0..w).map(|_| s.select("held").unwrap()).collect();
        let mut i = 0;
        group.bench_function(format!("adaptive/{w}w-{f}f"), |b| {
            b.iter(|| {
                let name = &names[i % names.len()];
                let took = Duration::from_micros(100_000 + (i % 997) as u64 * 100);
                s.call_ended(name, &leases[i % leases.len()], black_box(CallEnd::Answered { took }));
                i += 1;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, select, call_end);
criterion_main!(benches);
