//! Exact timelines for the worker model. Work sizes are chosen so every
//! timestamp is exact in binary floating point.

use super::*;

fn worker(cores: u32, memory_mb: u64) -> Worker {
    Worker::new(Limits::new(cores, memory_mb, 64, Some(5000.0), 0.0).unwrap())
}

fn work(cold_ms: f64, warm_ms: f64) -> Work {
    Work { cold_ms, warm_ms }
}

/// A warm start, and cold starts by cause.
const WARM: Option<Cold> = None;
const FIRST: Option<Cold> = Some(Cold::First);
const REFRESH: Option<Cold> = Some(Cold::Refresh);
const SCALE_UP: Option<Cold> = Some(Cold::ScaleUp);
const EVICTED: Option<Cold> = Some(Cold::Evicted);
const KILLED: Option<Cold> = Some(Cold::Killed);

fn done(call: CallId, cold: Option<Cold>, arrived_ms: f64, finished_ms: f64) -> Event {
    Event::Completed { call, cold, arrived_ms, finished_ms }
}

fn failed(call: CallId, arrived_ms: f64, finished_ms: f64) -> Event {
    Event::Failed { call, arrived_ms, finished_ms }
}

fn removed(function: &str) -> Event {
    Event::Removed { function: function.to_string() }
}

fn stats(cold: u64, warm: u64, killed: u64, refreshes: u64, evictions: u64, queued: u64) -> Stats {
    Stats { cold, warm, killed, refreshes, evictions, queued, ..Stats::default() }
}

#[test]
fn limits_are_checked_and_the_evictor_aims_at_a_fifth_of_the_slots() {
    assert_eq!(Limits::new(4, 511, 64, None, 0.0), None);
    assert_eq!(Limits::new(0, 6144, 64, None, 0.0), None);
    assert_eq!(Limits::new(4, 6144, 513, None, 0.0), None);
    assert_eq!(Limits::new(4, 6144, 64, Some(0.0), 0.0), None);
    let goal = |memory_mb| Limits::new(4, memory_mb, 64, None, 0.0).unwrap().free_slots_goal();
    // 12 slots: 1 + 10 * 20 / 100; 29 slots (a 16 GiB VM's pool): 1 + 27 * 20 / 100.
    assert_eq!((goal(6144), goal(15097), goal(512)), (3, 6, 1));
}

#[test]
fn first_call_is_cold_and_the_next_one_warm() {
    let mut w = worker(4, 6144);
    w.arrive(0.0, 1, "f", work(300.0, 100.0));
    // The autoscaler's next step comes before the call ends.
    assert_eq!(w.next_deadline(), Some(100.0));
    w.advance(299.0);
    assert_eq!(w.take_events(), vec![]);
    w.advance(300.0);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 300.0)]);

    w.arrive(400.0, 2, "f", work(300.0, 100.0));
    w.advance(600.0);
    assert_eq!(w.take_events(), vec![done(2, WARM, 400.0, 500.0)]);
    assert_eq!(w.stats(), stats(1, 1, 0, 0, 0, 0));
}

#[test]
fn before_any_call_ended_a_function_has_one_instance() {
    // No run time known yet: OpenLambda's average is 0, so one instance
    // serves both calls, the second warm after the first.
    let mut w = worker(4, 6144);
    w.arrive(0.0, 1, "f", work(100.0, 50.0));
    w.arrive(10.0, 2, "f", work(100.0, 50.0));
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 100.0), done(2, WARM, 10.0, 150.0)]);
    assert_eq!(w.stats(), stats(1, 1, 0, 0, 0, 0));
}

#[test]
fn the_autoscaler_adds_a_cold_instance_for_concurrent_calls_and_kills_it_after() {
    let mut w = worker(4, 6144);
    w.arrive(0.0, 1, "f", work(40.0, 20.0));
    w.advance(200.0);
    // Average 40 ms: two calls outstanding want min(2, 2 * 40 / 10) instances.
    w.arrive(200.0, 2, "f", work(40.0, 20.0));
    w.arrive(205.0, 3, "f", work(40.0, 20.0));
    w.advance(304.0);
    let expected = vec![done(1, FIRST, 0.0, 40.0), done(2, WARM, 200.0, 220.0), done(3, SCALE_UP, 205.0, 245.0)];
    assert_eq!(w.take_events(), expected);
    // 100 ms after it was added, with nothing outstanding, the newest goes.
    w.advance(305.0);
    assert_eq!(w.take_events(), vec![removed("f")]);
    assert_eq!(w.next_deadline(), Some(405.0));
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![], "the last instance stays");
    assert_eq!(w.stats(), stats(2, 1, 1, 0, 0, 0));
}

#[test]
fn a_stale_pull_kills_every_instance_and_the_call_starts_cold() {
    let mut w = worker(4, 6144);
    w.arrive(0.0, 1, "f", work(10.0, 5.0));
    w.arrive(4999.0, 2, "f", work(10.0, 5.0));
    // 5000 ms after the pull at 0: the running instance dies after its call.
    w.arrive(5000.0, 3, "f", work(10.0, 5.0));
    w.advance(6000.0);
    let expected =
        vec![done(1, FIRST, 0.0, 10.0), done(2, WARM, 4999.0, 5004.0), removed("f"), done(3, REFRESH, 5000.0, 5010.0)];
    assert_eq!(w.take_events(), expected);
    assert_eq!(w.stats(), stats(2, 1, 1, 1, 0, 0));
    // The next pull is 5000 ms after this one.
    w.arrive(9999.0, 4, "f", work(10.0, 5.0));
    w.advance(10_100.0);
    assert_eq!(w.take_events(), vec![done(4, WARM, 9999.0, 10_004.0)]);
}

#[test]
fn without_code_refresh_the_last_instance_lives_on() {
    let mut w = Worker::new(Limits::new(4, 6144, 64, None, 0.0).unwrap());
    w.arrive(0.0, 1, "f", work(10.0, 5.0));
    w.arrive(1e6, 2, "f", work(10.0, 5.0));
    w.advance(2e6);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 10.0), done(2, WARM, 1e6, 1e6 + 5.0)]);
}

#[test]
fn the_evictor_keeps_a_slot_free_by_destroying_the_oldest_paused_sandbox() {
    // Three slots, one to keep free; a paused sandbox keeps 256 MB.
    let mut w = Worker::new(Limits::new(4, 1536, 256, None, 0.0).unwrap());
    for (i, f) in ["f", "g", "h", "i"].into_iter().enumerate() {
        w.arrive(20.0 * i as f64, i as u64, f, work(10.0, 5.0));
    }
    // i's sandbox left 256 MB free: f's, paused first, went.
    assert_eq!(w.stats(), stats(4, 0, 0, 0, 1, 0));
    w.arrive(100.0, 4, "f", work(10.0, 5.0));
    w.advance(200.0);
    let events = w.take_events();
    assert!(events.iter().all(|e| matches!(e, Event::Completed { .. })), "the scheduler is not told: {events:?}");
    assert_eq!(events.last(), Some(&done(4, EVICTED, 100.0, 110.0)), "f's instance lost its sandbox");
    assert_eq!(w.stats(), stats(5, 0, 0, 0, 2, 0));
}

#[test]
fn calls_share_the_cores_beyond_their_number() {
    // One core, two calls: both at half speed until the short one is done.
    let mut w = worker(1, 6144);
    w.arrive(0.0, 1, "f", work(100.0, 100.0));
    w.arrive(0.0, 2, "g", work(300.0, 300.0));
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 200.0), done(2, FIRST, 0.0, 400.0)]);
}

#[test]
fn an_arrival_slows_the_calls_already_running() {
    // Two cores: two calls run at full speed for 20 ms, then four share them
    // at half speed; the first two finish at 20 + 80 / 0.5, the last two
    // have 20 ms of work left and run alone at full speed.
    let mut w = worker(2, 6144);
    w.arrive(0.0, 1, "a", work(100.0, 100.0));
    w.arrive(0.0, 2, "b", work(100.0, 100.0));
    w.arrive(20.0, 3, "c", work(100.0, 100.0));
    w.arrive(20.0, 4, "d", work(100.0, 100.0));
    w.advance(1000.0);
    let mut events = w.take_events();
    events.sort_by_key(|e| match e {
        Event::Completed { call, .. } => *call,
        Event::Removed { .. } | Event::Failed { .. } => 0,
    });
    let expected = vec![
        done(1, FIRST, 0.0, 180.0),
        done(2, FIRST, 0.0, 180.0),
        done(3, FIRST, 20.0, 200.0),
        done(4, FIRST, 20.0, 200.0),
    ];
    assert_eq!(events, expected);
}

#[test]
fn a_call_without_work_completes_on_arrival() {
    let mut w = worker(1, 512);
    w.arrive(5.0, 1, "f", work(0.0, 0.0));
    assert_eq!(w.take_events(), vec![done(1, FIRST, 5.0, 5.0)]);
}

#[test]
fn time_far_from_the_origin_still_advances() {
    // 1e12 ms: the rounding of `now + remaining` must not stall `advance`.
    let mut w = worker(3, 6144);
    for call in 0..3 {
        w.arrive(1e12, call, "f", work(0.3, 0.1));
    }
    w.arrive(1e12 + 0.1, 3, "g", work(0.3, 0.1));
    w.advance(1e12 + 10.0);
    let completed = w.take_events().iter().filter(|e| matches!(e, Event::Completed { .. })).count();
    assert_eq!(completed, 4);
}

#[test]
fn an_instance_whose_sandbox_was_evicted_still_reports_its_kill() {
    // As in the evictor's test: f's paused sandbox is destroyed for i's.
    let mut w = Worker::new(Limits::new(4, 1536, 256, Some(5000.0), 0.0).unwrap());
    for (i, f) in ["f", "g", "h", "i"].into_iter().enumerate() {
        w.arrive(20.0 * i as f64, i as u64, f, work(10.0, 5.0));
    }
    w.advance(100.0);
    assert!(w.take_events().iter().all(|e| matches!(e, Event::Completed { .. })));
    assert_eq!(w.stats().evictions, 1);
    // f's code is stale: its instance is killed. It still points at the
    // sandbox the evictor destroyed, so OpenLambda reports the kill.
    w.arrive(5000.0, 4, "f", work(10.0, 5.0));
    w.advance(5100.0);
    assert_eq!(w.take_events(), vec![removed("f"), done(4, REFRESH, 5000.0, 5010.0)]);
    assert_eq!(w.stats().killed, 1);
}

#[test]
fn the_autoscaler_averages_round_trips_without_the_sandbox_creation() {
    let mut w = worker(4, 6144);
    // A cold start: 95 ms making the sandbox, then a 5 ms round trip.
    w.arrive(0.0, 1, "f", work(100.0, 5.0));
    w.advance(200.0);
    // Average 5 ms (not 100): two calls outstanding want
    // min(2, 2 * 5 / 10) = 1 instance, so the second waits for the first.
    w.arrive(200.0, 2, "f", work(100.0, 5.0));
    w.arrive(201.0, 3, "f", work(100.0, 5.0));
    w.advance(1000.0);
    let expected = vec![done(1, FIRST, 0.0, 100.0), done(2, WARM, 200.0, 205.0), done(3, WARM, 201.0, 210.0)];
    assert_eq!(w.take_events(), expected);
}

#[test]
fn a_cold_calls_round_trip_begins_when_its_sandbox_is_made_even_on_shared_cores() {
    // One core. f's cold start (52 ms making the sandbox, an 8 ms round
    // trip) runs alone for 20 ms, then shares the core with g: its sandbox
    // is made at 20 + 32 / 0.5 = 84, its call ends at 84 + 8 / 0.5 = 100.
    // The round trip took 16 ms, so two calls want min(2, 2 * 16 / 10) = 2
    // instances (8 ms of work would have wanted 1).
    let mut w = worker(1, 6144);
    w.arrive(0.0, 1, "f", work(60.0, 8.0));
    w.arrive(20.0, 2, "g", work(200.0, 200.0));
    w.advance(300.0);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 100.0), done(2, FIRST, 20.0, 260.0)]);
    w.arrive(300.0, 3, "f", work(60.0, 8.0));
    w.arrive(300.0, 4, "f", work(60.0, 8.0));
    assert_eq!(w.stats().cold, 3, "a second instance, cold");
}

#[test]
fn round_trips_count_in_whole_ms_and_at_least_one() {
    let mut w = worker(4, 6144);
    w.arrive(0.0, 1, "f", work(0.5, 0.5));
    w.advance(100.0);
    // 0.5 ms counts as 1 ms: 20 calls outstanding want 20 * 1 / 10 = 2
    // instances (with 0.5 they would want none beyond the one).
    for call in 2..22 {
        w.arrive(100.0, call, "f", work(0.5, 0.5));
    }
    w.advance(150.0);
    assert_eq!(w.take_events().len(), 21, "every call done");
    assert_eq!(w.stats().cold, 2);
}

#[test]
fn with_every_slot_in_use_the_evictor_destroys_the_oldest_and_its_call_fails() {
    // Two slots, the goal one free. g's sandbox takes the last slot: with
    // none free and nothing paused, the evictor destroys the sandbox in use
    // made longest ago, f's, and f's call fails (OpenLambda's 502).
    let mut w = Worker::new(Limits::new(4, 1024, 64, None, 0.0).unwrap());
    w.arrive(0.0, 1, "f", work(100.0, 100.0));
    w.arrive(10.0, 2, "g", work(100.0, 100.0));
    assert_eq!(w.take_events(), vec![failed(1, 0.0, 10.0)]);
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(2, FIRST, 10.0, 110.0)]);
    assert_eq!((w.stats().forced_evictions, w.stats().failed, w.stats().killed), (1, 1, 0));
    // f's instance dropped the sandbox: its next call is cold, and fits.
    w.arrive(1000.0, 3, "f", work(100.0, 100.0));
    w.advance(2000.0);
    assert_eq!(w.take_events(), vec![done(3, KILLED, 1000.0, 1100.0)]);
}

#[test]
fn the_instance_whose_sandbox_was_destroyed_in_use_fails_its_queued_calls_too() {
    // f's one instance runs a call with two more queued (no run time known
    // yet: one instance); g's sandbox takes the last slot. All three of
    // f's calls fail at once; the instance lives on without a sandbox.
    let mut w = Worker::new(Limits::new(4, 1024, 64, None, 0.0).unwrap());
    w.arrive(0.0, 1, "f", work(100.0, 100.0));
    w.arrive(1.0, 2, "f", work(100.0, 100.0));
    w.arrive(2.0, 3, "f", work(100.0, 100.0));
    w.arrive(10.0, 4, "g", work(100.0, 100.0));
    assert_eq!(w.take_events(), vec![failed(1, 0.0, 10.0), failed(2, 1.0, 10.0), failed(3, 2.0, 10.0)]);
    assert_eq!(w.stats().failed, 3);
    w.advance(1000.0);
    assert_eq!(w.take_events(), vec![done(4, FIRST, 10.0, 110.0)]);
}

#[test]
fn paused_sandboxes_go_before_one_in_use() {
    // Three slots, the goal one free: a paused sandbox (64 MB) is destroyed
    // first, and no call fails.
    let mut w = Worker::new(Limits::new(4, 1536, 64, None, 0.0).unwrap());
    w.arrive(0.0, 1, "f", work(10.0, 10.0));
    w.arrive(20.0, 2, "g", work(100.0, 100.0));
    w.arrive(30.0, 3, "h", work(100.0, 100.0));
    w.advance(1000.0);
    let events = w.take_events();
    assert!(events.iter().all(|e| matches!(e, Event::Completed { .. })), "{events:?}");
    assert_eq!((w.stats().evictions, w.stats().forced_evictions, w.stats().failed), (1, 0, 0));
}

#[test]
fn a_killed_instance_is_reported_once_its_sandbox_is_destroyed() {
    // Destroys take 10 ms: f's stale pull at 5000 kills its paused
    // instance, whose report comes at 5010, before the new cold call ends.
    let mut w = Worker::new(Limits::new(4, 6144, 64, Some(5000.0), 10.0).unwrap());
    w.arrive(0.0, 1, "f", work(20.0, 5.0));
    w.advance(100.0);
    assert_eq!(w.take_events(), vec![done(1, FIRST, 0.0, 20.0)]);
    w.arrive(5000.0, 2, "f", work(20.0, 5.0));
    assert_eq!(w.take_events(), vec![], "not reported before it is destroyed");
    assert_eq!(w.next_deadline(), Some(5010.0));
    w.advance(6000.0);
    assert_eq!(w.take_events(), vec![removed("f"), done(2, REFRESH, 5000.0, 5020.0)]);
}

#[test]
fn the_evictor_does_not_count_its_destroys_in_flight_and_waits_for_them_before_its_last_resort() {
    // Three slots, the goal one free; a paused sandbox keeps 256 MB, and a
    // destroy takes 10 ms.
    let mut w = Worker::new(Limits::new(4, 1536, 256, None, 10.0).unwrap());
    for (i, f) in ["a", "b", "c"].into_iter().enumerate() {
        w.arrive(20.0 * i as f64, i as u64, f, work(10.0, 10.0));
    }
    w.advance(60.0);
    assert_eq!(w.stats().evictions, 0, "768 MB free: one slot");
    // d's sandbox leaves no slot free: a's paused one goes (until 110).
    w.arrive(100.0, 3, "d", work(100.0, 100.0));
    assert_eq!(w.stats().evictions, 1);
    // e waits for memory; b unpauses (waiting behind e): still no slot
    // free, as a's memory is not back, so c's goes too.
    w.arrive(101.0, 4, "e", work(100.0, 100.0));
    w.arrive(102.0, 5, "b", work(10.0, 10.0));
    assert_eq!(w.stats().evictions, 2, "over-evicts: in-flight destroys do not count");
    assert_eq!(w.take_events().len(), 3, "a, b and c's first calls only");
    // At 110 a's memory is back and e starts; no slot is free, nothing is
    // paused, but c's destroy is in flight: no last resort until it is
    // done, at 112. Then d, in use longest, is destroyed, its call fails,
    // and b resumes in c's 256 MB.
    w.advance(111.0);
    assert_eq!((w.stats().forced_evictions, w.stats().queued), (0, 2));
    w.advance(1000.0);
    let expected = vec![failed(3, 100.0, 112.0), done(5, WARM, 102.0, 122.0), done(4, FIRST, 101.0, 210.0)];
    assert_eq!(w.take_events(), expected);
    assert_eq!(w.stats().forced_evictions, 1);
}

#[test]
fn at_most_eight_of_the_evictors_destroys_are_in_flight() {
    // 50 slots, the goal 10 free; paused sandboxes keep all their memory.
    let mut w = Worker::new(Limits::new(64, 50 * 512, 512, None, 10.0).unwrap());
    for call in 0..40 {
        w.arrive(0.0, call, &format!("f{call}"), work(1.0, 1.0));
    }
    w.advance(5.0);
    assert_eq!(w.stats().evictions, 0, "10 slots free");
    // Ten long calls take the last ten slots: each evicts as many as the
    // slots short of the goal, not counting destroys in flight, but never
    // with more than eight in flight.
    for call in 40..50 {
        w.arrive(5.0, call, &format!("f{call}"), work(100.0, 100.0));
    }
    assert_eq!(w.stats().evictions, 8);
    // Their memory is back at 15: two more to reach the goal.
    w.advance(15.0);
    assert_eq!(w.stats().evictions, 10);
    w.advance(1000.0);
    assert_eq!((w.stats().evictions, w.stats().forced_evictions), (10, 0));
}
