//! The decision must not allocate: select + release (and what a learning
//! balancer learns from an answer) for every balancer, once every function
//! has been seen, under a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hiku::Scheduler;
use hiku::WorkerUrl;
use hiku::{Answer, BalancerKind, Outcome};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn select_and_release_do_not_allocate() {
    for kind in BalancerKind::ALL {
        let workers = (0..8).map(|i| (WorkerUrl::parse(&format!("http://w{i}:1")).unwrap(), Vec::new())).collect();
        let s = Scheduler::new(kind, workers);
        let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
        for name in &names {
            let lease = s.select(name).unwrap();
            s.release(name, lease, Outcome::Completed);
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..10 {
            for name in &names {
                let lease = s.select(name).unwrap();
                let held = s.select(name).unwrap();
                if s.learns() {
                    let answer = Answer {
                        sent_at: std::time::Instant::now(),
                        elapsed: Duration::from_millis(3),
                        cold: Some(true),
                        service_ms: None,
                    };
                    s.observe(name, &lease, answer);
                }
                s.release(name, lease, Outcome::Completed);
                s.release(name, held, Outcome::Failed);
            }
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(allocations, 0, "{kind}: {allocations} allocations in 2000 decisions");
    }
}
