//! The idle-instance table, alone and under threads.
use super::queue::{INLINE_NAME, LIVE_QUEUES};
use super::*;
use crate::worker::tests::set_of;
use crate::worker::Lease;

#[test]
fn entries_list_each_function_with_its_workers_and_counts() {
    let q = IdleQueues::new(64);
    let set = set_of(3);
    let long = "a-function-name-longer-than-thirty-two-bytes";
    for (f, w) in [("f", 2), ("f", 1), ("f", 2), (long, 3), ("g", 1)] {
        q.push(f, w);
    }
    q.remove_one("g", 1);
    let entries = q.entries(&set, None);
    let expected = vec![(long.to_string(), vec![(3, 1)]), ("f".to_string(), vec![(1, 1), (2, 2)])];
    assert_eq!(entries, expected);
    assert_eq!(q.entries(&set, Some("f")), vec![("f".to_string(), vec![(1, 1), (2, 2)])]);
    // A worker no longer in the set is left out.
    let smaller = WorkerSet::new(2, set.as_slice()[..2].to_vec());
    assert_eq!(q.entries(&smaller, Some(long)), vec![]);
}

#[test]
fn takes_the_least_loaded_holder_and_consumes_it() {
    let set = set_of(3);
    let q = IdleQueues::new(16);
    assert!(q.take_least_loaded("f", &set).is_none());
    q.push("f", 1);
    q.push("f", 2);
    let _busy = Lease::new(&set.as_slice()[0]);
    assert_eq!(q.take_least_loaded("f", &set).unwrap().id(), 2);
    assert_eq!(q.take_least_loaded("f", &set).unwrap().id(), 1);
    assert!(q.take_least_loaded("f", &set).is_none());
    assert!(q.take_least_loaded("g", &set).is_none());
}

#[test]
fn counts_instances_and_grows_past_a_segment() {
    let set = set_of(20);
    let q = IdleQueues::new(16);
    for id in 1..=20 {
        q.push("f", id);
        q.push("f", id);
    }
    assert_eq!(q.count("f", 7), 2);
    assert!(q.remove_one("f", 7));
    assert!(q.remove_one("f", 7));
    assert!(!q.remove_one("f", 7));
    let mut taken = 0;
    while q.take_least_loaded("f", &set).is_some() {
        taken += 1;
    }
    assert_eq!(taken, 38);
}

#[test]
fn forgets_removed_workers() {
    let set = set_of(3);
    let q = IdleQueues::new(16);
    q.push("f", 3);
    q.push("g", 3);
    let smaller = WorkerSet::new(2, set.as_slice()[..2].to_vec());
    assert!(q.take_least_loaded("f", &smaller).is_none());
    q.retain(&smaller);
    assert_eq!(q.count("g", 3), 0);
}

#[test]
fn long_and_short_names_are_told_apart() {
    let set = set_of(2);
    let q = IdleQueues::new(16);
    let long = "f".repeat(INLINE_NAME + 1);
    q.push(&long, 1);
    q.push(&long[..INLINE_NAME], 2);
    assert_eq!(q.take_least_loaded(&long, &set).unwrap().id(), 1);
    assert_eq!(q.take_least_loaded(&long[..INLINE_NAME], &set).unwrap().id(), 2);
    assert!(q.take_least_loaded("", &set).is_none());
}

#[test]
fn a_full_bucket_forgets_its_least_recently_used_function() {
    let set = set_of(2);
    // One bucket.
    let q = IdleQueues::new(WAYS);
    assert_eq!(q.capacity(), WAYS);
    for i in 0..WAYS {
        q.push(&format!("f{i}"), 1);
    }
    assert_eq!(q.functions(), WAYS);
    // f0 is used again: f1 is now the least recently used.
    assert_eq!(q.take_least_loaded("f0", &set).unwrap().id(), 1);
    q.push("new", 2);
    assert_eq!(q.functions(), WAYS);
    assert!(!q.tracks("f1"), "the least recently used went");
    assert!(q.tracks("f0") && (2..WAYS).all(|i| q.tracks(&format!("f{i}"))));
    assert_eq!(q.take_least_loaded("new", &set).unwrap().id(), 2, "the new function is routed warm");
}

#[test]
fn a_queue_is_two_cache_lines() {
    assert_eq!(std::mem::size_of::<FunctionQueue>(), 128);
    assert_eq!(std::mem::size_of::<Bucket>(), 64);
}

#[test]
fn a_function_whose_last_instance_is_evicted_is_dropped() {
    let q = IdleQueues::new(16);
    q.push("f", 1);
    q.push("f", 1);
    assert!(q.remove_one("f", 1));
    assert!(q.tracks("f"), "one instance left");
    assert!(q.remove_one("f", 1));
    assert!(!q.tracks("f"));
    assert_eq!(q.functions(), 0);
    assert!(!q.remove_one("f", 1));
}

/// Taken by the tests that count `LIVE_QUEUES`: one's garbage, not yet
/// freed, must not count against the other's bound.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_million_names_keep_memory_bounded_and_every_new_one_warm() {
    let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let set = set_of(1);
    let q = IdleQueues::new(1024);
    for i in 0..1_000_000u32 {
        let name = format!("function-{i}");
        q.push(&name, 1);
        if i % 997 == 0 {
            assert_eq!(q.take_least_loaded(&name, &set).map(|w| w.id()), Some(1), "{name}");
        }
    }
    assert!(q.functions() <= q.capacity());
    // Freed queues wait for the epoch to move on, which other tests'
    // shards (pinned, repinning every second) may hold back a while.
    // Other tests' queues live at the same time: a generous bound, far
    // below the million made.
    let live = live_queues_once_freed(0, q.capacity() + 20_000, || {
        epoch::pin().flush();
    });
    assert!(live < q.capacity() + 20_000, "{live} queues alive for a table of {}", q.capacity());
}

/// Live queues made since `before` once fewer than `bound`, calling
/// `free` between looks, for at most 10 s: the epoch moves on only
/// once every pinned thread in the process (other tests' shards
/// among them) has repinned.
fn live_queues_once_freed(before: usize, bound: usize, mut free: impl FnMut()) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        for _ in 0..64 {
            free();
        }
        let live = LIVE_QUEUES.load(Ordering::Relaxed).saturating_sub(before);
        if live < bound || std::time::Instant::now() > deadline {
            return live;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_thread_that_holds_the_epoch_frees_dropped_queues_when_it_repins() {
    let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    // As a shard: pinned for good, repinning now and then.
    std::thread::spawn(|| {
        hold_epoch();
        let q = IdleQueues::new(WAYS);
        let before = LIVE_QUEUES.load(Ordering::Relaxed);
        for i in 0..20_000u32 {
            let name = format!("churn-{i}");
            q.push(&name, 1);
            assert!(q.remove_one(&name, 1));
            if i % 1000 == 999 {
                repin_epoch();
            }
        }
        // Other tests make queues meanwhile; 20 000 were dropped here.
        // Without the repins this thread's own pin would keep them all.
        let live = live_queues_once_freed(before, 10_000, repin_epoch);
        assert!(live < 10_000, "{live} dropped queues are still alive");
    })
    .join()
    .unwrap();
}

#[test]
fn cores_churning_a_small_table_agree() {
    let set = Arc::new(set_of(4));
    let q = Arc::new(IdleQueues::new(16));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (set, q) = (Arc::clone(&set), Arc::clone(&q));
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let f = format!("f{}", (i * 7 + t) % 200);
                    match i % 3 {
                        0 => q.push(&f, 1 + (i + t) % 4),
                        1 => drop(q.take_least_loaded(&f, &set)),
                        _ => drop(q.remove_one(&f, 1 + i % 4)),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(q.functions() <= q.capacity(), "{} functions", q.functions());
    let tracked = (0..200).filter(|i| q.tracks(&format!("f{i}"))).count();
    assert!(tracked <= q.capacity());
}

#[test]
fn concurrent_pushes_and_takes_balance() {
    let set = Arc::new(set_of(4));
    let q = Arc::new(IdleQueues::new(64));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (set, q) = (Arc::clone(&set), Arc::clone(&q));
            std::thread::spawn(move || {
                let mut taken = 0;
                for i in 0..5000u64 {
                    let f = ["a", "b", "c"][(i % 3) as usize];
                    q.push(f, 1 + (i + t) % 4);
                    if q.take_least_loaded(f, &set).is_some() {
                        taken += 1;
                    }
                }
                taken
            })
        })
        .collect();
    let taken: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let left: u64 = ["a", "b", "c"].iter().flat_map(|f| (1..=4).map(|w| q.count(f, w))).sum();
    assert_eq!(taken + left, 4 * 5000);
}
