//! The access log: a line per call, none lost at shutdown or rotation.

use crate::support::{sample, scrape, wait_for, Driver, Hiku, Worker};

on_both_drivers!(the_access_log_has_a_line_per_call_and_loses_none_at_shutdown);
fn the_access_log_has_a_line_per_call_and_loses_none_at_shutdown(driver: Driver) {
    let w = Worker::start();
    // Both drivers' runs of this test share the process: one file each.
    let path = std::env::temp_dir().join(format!("hiku-access-{}-{driver:?}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let extra = serde_json::json!({"log": {"access": path}, "limits": {"max_body_bytes": 16}});
    let mut hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], extra);
    let mut c = hiku.client();
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 200);
    // Written within the flush interval while hiku runs.
    wait_for("the first line", || std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 1));
    assert_eq!(c.request("GET", "/run/g?code=404", &[], b"").status, 404);
    // A call refused before any worker is chosen is a call too: logged and
    // counted (its body over limits.max_body_bytes).
    assert_eq!(hiku.client().request("POST", "/run/h", &[], &[b'x'; 17]).status, 413);
    assert_eq!(sample(&scrape(&hiku), "hiku_calls_total", Some(("class", "4xx"))), 2.0);
    // The last line is still in the shard's buffer: the drain writes it.
    drop(c);
    hiku.signal(libc::SIGTERM);
    assert_eq!(hiku.wait_exit().code(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let first: Vec<&str> = lines.iter().find(|l| l.contains("/run/f")).unwrap().split(' ').collect();
    assert_eq!(first[1..6], ["127.0.0.1", "\"POST", "/run/f\"", "200", w.url.as_str()], "{text}");
    assert!(first[0].ends_with('Z') && first[6].parse::<f64>().is_ok(), "{text}");
    // Lines of two connections come in any order: each core hands its own
    // over when its buffer is due.
    assert!(lines.iter().any(|l| l.contains(" \"GET /run/g?code=404\" 404 ")), "{text}");
    assert!(lines.iter().any(|l| l.contains(" \"POST /run/h\" 413 - ")), "{text}");
    let _ = std::fs::remove_file(&path);
}

on_both_drivers!(sigusr1_reopens_the_access_log_after_rotation_and_loses_no_line);
fn sigusr1_reopens_the_access_log_after_rotation_and_loses_no_line(driver: Driver) {
    let w = Worker::start();
    let path = std::env::temp_dir().join(format!("hiku-rotate-{}-{driver:?}.log", std::process::id()));
    let rotated = path.with_extension("log.1");
    let _ = (std::fs::remove_file(&path), std::fs::remove_file(&rotated));
    let mut hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], serde_json::json!({"log": {"access": path}}));
    let mut c = hiku.client();
    for _ in 0..3 {
        assert_eq!(c.request("POST", "/run/before", &[], b"x").status, 200);
    }
    // As logrotate does: rename, then signal; a call comes in between.
    std::fs::rename(&path, &rotated).unwrap();
    assert_eq!(c.request("POST", "/run/between", &[], b"x").status, 200);
    hiku.signal(libc::SIGUSR1);
    wait_for("the file opened again", || path.exists());
    assert_eq!(c.request("POST", "/run/after", &[], b"x").status, 200);
    wait_for("the call after in the new file", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("/run/after"))
    });
    drop(c);
    hiku.signal(libc::SIGTERM);
    assert_eq!(hiku.wait_exit().code(), Some(0));
    let (old, new) = (std::fs::read_to_string(&rotated).unwrap(), std::fs::read_to_string(&path).unwrap());
    // Every call has its line, in one file or the other; the call after the
    // signal is in the new one.
    assert_eq!(old.lines().count() + new.lines().count(), 5, "{old}---\n{new}");
    assert_eq!(format!("{old}{new}").matches("\"POST /run/before\" 200").count(), 3, "{old}---\n{new}");
    assert!(format!("{old}{new}").contains("\"POST /run/between\" 200"), "{old}---\n{new}");
    assert!(!old.contains("/run/after"), "{old}");
    let _ = (std::fs::remove_file(&path), std::fs::remove_file(&rotated));
}
