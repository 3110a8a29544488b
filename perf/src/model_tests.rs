//! Exact timelines for the worker model. Work sizes are chosen so every
//! timestamp is exact in binary floating point.

use super::*;

fn worker(cores: u32, memory_mb: u64, keep_alive_ms: f64) -> Worker {
    Worker::new(Limits::new(cores, memory_mb, keep_alive_ms).unwrap())
}

fn work(cold_ms: f64, warm_ms: f64) -> Work {
    Work { cold_ms, warm_ms }
}

fn done(call: CallId, cold: bool, arrived_ms: f64, finished_ms: f64) -> Event {
    Event::Completed { call, cold, arrived_ms, finished_ms }
}

fn removed(function: &str, why: Removal) -> Event {
    Event::Removed { function: function.to_string(), why }
}

#[test]
fn limits_count_whole_sandboxes() {
    assert_eq!(Limits::new(4, 6144, 1.0).unwrap().sandboxes, 12);
    assert_eq!(Limits::new(4, 1023, 1.0).unwrap().sandboxes, 1);
    assert_eq!(Limits::new(4, 511, 1.0), None);
    assert_eq!(Limits::new(0, 6144, 1.0), None);
}

#[test]
fn first_call_is_cold_and_the_next_one_warm() {
    let mut w = worker(4, 1024, 1000.0);
    w.arrive(0.0, 1, "f", work(300.0, 100.0));
    assert_eq!(w.next_deadline(), Some(300.0));
    w.advance(299.0);
    assert_eq!(w.take_events(), vec![]);
    w.advance(300.0);
    assert_eq!(w.take_events(), vec![done(1, true, 0.0, 300.0)]);

    w.arrive(400.0, 2, "f", work(300.0, 100.0));
    w.advance(600.0);
    assert_eq!(w.take_events(), vec![done(2, false, 400.0, 500.0)]);
    assert_eq!(w.stats(), Stats { cold: 1, warm: 1, evictions: 0, expired: 0, queued: 0 });
}

#[test]
fn a_busy_sandbox_is_not_shared() {
    let mut w = worker(4, 1024, 1000.0);
    w.arrive(0.0, 1, "f", work(100.0, 50.0));
    w.arrive(10.0, 2, "f", work(100.0, 50.0));
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(1, true, 0.0, 100.0), done(2, true, 10.0, 110.0)]);
    assert_eq!(w.stats().cold, 2);
}

#[test]
fn calls_share_the_cores_beyond_their_number() {
    // One core, two calls: both at half speed until the short one is done.
    let mut w = worker(1, 6144, 1000.0);
    w.arrive(0.0, 1, "f", work(100.0, 100.0));
    w.arrive(0.0, 2, "g", work(300.0, 300.0));
    assert_eq!(w.next_deadline(), Some(200.0));
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(1, true, 0.0, 200.0), done(2, true, 0.0, 400.0)]);
}

#[test]
fn an_arrival_slows_the_calls_already_running() {
    // Two cores: two calls run at full speed for 20 ms, then four share them
    // at half speed; the first two finish at 20 + 80 / 0.5, the last two
    // have 20 ms of work left and run alone at full speed.
    let mut w = worker(2, 6144, 1000.0);
    w.arrive(0.0, 1, "a", work(100.0, 100.0));
    w.arrive(0.0, 2, "b", work(100.0, 100.0));
    w.arrive(20.0, 3, "c", work(100.0, 100.0));
    w.arrive(20.0, 4, "d", work(100.0, 100.0));
    assert_eq!(w.next_deadline(), Some(180.0));
    w.advance(1000.0);
    let mut events = w.take_events();
    events.sort_by_key(|e| match e {
        Event::Completed { call, .. } => *call,
        Event::Removed { .. } => 0,
    });
    let expected = vec![
        done(1, true, 0.0, 180.0),
        done(2, true, 0.0, 180.0),
        done(3, true, 20.0, 200.0),
        done(4, true, 20.0, 200.0),
    ];
    assert_eq!(events, expected);
}

#[test]
fn full_memory_evicts_the_least_recently_used_idle_sandbox() {
    let mut w = worker(4, 1024, 10_000.0);
    w.arrive(0.0, 1, "f", work(10.0, 10.0));
    w.arrive(20.0, 2, "g", work(10.0, 10.0));
    w.arrive(40.0, 3, "f", work(10.0, 10.0)); // warm: f is now the most recent
    w.advance(60.0);
    w.take_events();

    w.arrive(60.0, 4, "h", work(10.0, 10.0));
    assert_eq!(w.take_events(), vec![removed("g", Removal::Evicted)]);
    w.arrive(100.0, 5, "g", work(10.0, 10.0));
    assert_eq!(w.take_events(), vec![done(4, true, 60.0, 70.0), removed("f", Removal::Evicted)]);
    assert_eq!(w.stats(), Stats { cold: 4, warm: 1, evictions: 2, expired: 0, queued: 0 });
}

#[test]
fn with_no_idle_sandbox_calls_queue_in_arrival_order() {
    // One sandbox fits. g and then f wait for f's call to end; g goes first
    // (evicting f's sandbox), so the second f is cold after g.
    let mut w = worker(4, 512, 10_000.0);
    w.arrive(0.0, 1, "f", work(100.0, 10.0));
    w.arrive(10.0, 2, "g", work(50.0, 10.0));
    w.arrive(20.0, 3, "f", work(100.0, 10.0));
    assert_eq!(w.stats().queued, 2);
    assert_eq!(w.next_deadline(), Some(100.0));
    w.advance(1000.0);
    let expected = vec![
        done(1, true, 0.0, 100.0),
        removed("f", Removal::Evicted),
        done(2, true, 10.0, 150.0),
        removed("g", Removal::Evicted),
        done(3, true, 20.0, 250.0),
    ];
    assert_eq!(w.take_events(), expected);
    assert_eq!(w.stats(), Stats { cold: 3, warm: 0, evictions: 2, expired: 0, queued: 2 });
}

#[test]
fn a_queued_call_can_start_warm_in_a_sandbox_freed_before_it() {
    // The second g waits behind the first, then reuses its sandbox.
    let mut w = worker(4, 512, 10_000.0);
    w.arrive(0.0, 1, "f", work(100.0, 10.0));
    w.arrive(10.0, 2, "g", work(50.0, 10.0));
    w.arrive(20.0, 3, "g", work(50.0, 10.0));
    w.advance(1000.0);
    let events = w.take_events();
    assert_eq!(events[2], done(2, true, 10.0, 150.0));
    assert_eq!(events[3], done(3, false, 20.0, 160.0));
}

#[test]
fn idle_sandboxes_expire_after_the_keep_alive() {
    let mut w = worker(4, 6144, 1000.0);
    w.arrive(0.0, 1, "f", work(10.0, 5.0));
    w.advance(10.0);
    w.take_events();
    assert_eq!(w.next_deadline(), Some(1010.0));
    w.advance(1009.0);
    assert_eq!(w.take_events(), vec![]);
    w.advance(1010.0);
    assert_eq!(w.take_events(), vec![removed("f", Removal::Expired)]);
    assert_eq!(w.next_deadline(), None);
    w.arrive(2000.0, 2, "f", work(10.0, 5.0));
    w.advance(3000.0);
    assert_eq!(w.take_events(), vec![done(2, true, 2000.0, 2010.0)]);
    assert_eq!(w.stats(), Stats { cold: 2, warm: 0, evictions: 1, expired: 1, queued: 0 });
}

#[test]
fn a_use_restarts_the_keep_alive() {
    let mut w = worker(4, 6144, 1000.0);
    w.arrive(0.0, 1, "f", work(10.0, 10.0));
    w.arrive(900.0, 2, "f", work(10.0, 10.0));
    w.advance(1500.0);
    assert_eq!(w.take_events(), vec![done(1, true, 0.0, 10.0), done(2, false, 900.0, 910.0)]);
    assert_eq!(w.next_deadline(), Some(1910.0));
}

#[test]
fn a_call_without_work_completes_on_arrival() {
    let mut w = worker(1, 512, 1000.0);
    w.arrive(5.0, 1, "f", work(0.0, 0.0));
    assert_eq!(w.take_events(), vec![done(1, true, 5.0, 5.0)]);
}

#[test]
fn time_far_from_the_origin_still_advances() {
    // 1e12 ms: the rounding of `now + remaining` must not stall `advance`.
    let mut w = worker(3, 6144, 1000.0);
    for call in 0..3 {
        w.arrive(1e12, call, "f", work(0.3, 0.1));
    }
    w.arrive(1e12 + 0.1, 3, "g", work(0.3, 0.1));
    w.advance(1e12 + 10.0);
    let completed = w.take_events().iter().filter(|e| matches!(e, Event::Completed { .. })).count();
    assert_eq!(completed, 4);
}
