//! End to end: `hiku-perf soak --quick` through the real binaries: 20 000
//! calls while workers die, restart, leave and come back, then a burst of
//! 2 000 at once. No call may be lost, none stay in flight, and memory must
//! come back; the JSON report must add up.

mod support;

use hiku_perf::soak::Report;

#[test]
fn a_quick_soak_loses_nothing_and_leaks_nothing() {
    let (report, stdout, _): (Report, String, String) = support::run_perf(&["soak", "--quick"], "soak");
    assert_eq!(report.calls, 20_000);
    assert_eq!((report.lost, report.answered_total()), (0, 20_000), "{stdout}");
    assert!(report.answered.get(&200).copied().unwrap_or(0) > 10_000, "{stdout}");
    let churn = &report.churn;
    assert!(churn.kills + churn.removals > 0, "the workers were churned: {stdout}");
    assert!(report.in_flight_after.len() >= 2 && report.in_flight_after.iter().all(|&n| n == 0), "{stdout}");
    assert_eq!((report.burst, report.burst_ok, report.burst_errors), (2000, 2000, 0), "{stdout}");
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    assert!(stdout.contains("lost 0"), "{stdout}");
}

#[test]
fn a_tier_restarted_one_instance_after_the_other_fails_no_call() {
    let args = ["soak", "--instances", "2", "--calls", "60000", "--churn-ms", "50", "--connections", "16"];
    let (report, stdout, _): (hiku_perf::tier_soak::Report, String, String) = support::run_perf(&args, "tier-soak");
    let answered: u64 = report.answered.values().sum();
    assert_eq!((answered, report.lost), (60_000, 0), "{stdout}");
    assert_eq!(report.answered.get(&200).copied(), Some(60_000), "every call answered 200: {stdout}");
    assert!(report.restarts >= 2, "each instance restarted: {stdout}");
    // A kill costs the calls in flight on the instance, and those the
    // front sent it before its checks counted it out: a handful, counted.
    assert!(report.kill_failed + report.kill_lost < report.kill_calls / 100, "{stdout}");
    assert!(report.worker_lists.len() == 2 && report.problems().is_empty(), "{:?}", report.problems());
}
