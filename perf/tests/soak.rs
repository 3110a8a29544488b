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
