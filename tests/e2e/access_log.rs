//! The access log: a line per call, none lost at shutdown.

use crate::support::{wait_for, Driver, Hiku, Worker};

on_both_drivers!(the_access_log_has_a_line_per_call_and_loses_none_at_shutdown);
fn the_access_log_has_a_line_per_call_and_loses_none_at_shutdown(driver: Driver) {
    let w = Worker::start();
    // Both drivers' runs of this test share the process: one file each.
    let path = std::env::temp_dir().join(format!("hiku-access-{}-{driver:?}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], serde_json::json!({"log": {"access": path}}));
    let mut c = hiku.client();
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 200);
    // Written within the flush interval while hiku runs.
    wait_for("the first line", || std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 1));
    assert_eq!(c.request("GET", "/run/g?code=404", &[], b"").status, 404);
    // The last line is still in the shard's buffer: the drain writes it.
    drop(c);
    hiku.signal(libc::SIGTERM);
    assert_eq!(hiku.wait_exit().code(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(first[1..6], ["127.0.0.1", "\"POST", "/run/f\"", "200", w.url.as_str()], "{}", lines[0]);
    assert!(first[0].ends_with('Z') && first[6].parse::<f64>().is_ok(), "{}", lines[0]);
    assert!(lines[1].contains(" \"GET /run/g?code=404\" 404 "), "{}", lines[1]);
    let _ = std::fs::remove_file(&path);
}
