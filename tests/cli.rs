//! The `hiku` command line: subcommands, exit codes and the one-line
//! messages for configs that can't be used.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::{hiku_command, DEADLINE};

/// Runs `hiku <args> -c <file with config>` to its end (within the deadline).
fn run(config: &str, args: &[&str]) -> Output {
    let (mut cmd, path) = hiku_command(config, args);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("hiku {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hiku(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hiku")).args(args).output().unwrap()
}

#[test]
fn version_and_help() {
    let out = hiku(&["--version"]);
    assert!(out.status.success());
    let version = format!("hiku {} (commit {}; I/O drivers: io_uring, epoll)", env!("CARGO_PKG_VERSION"), commit());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    let help = String::from_utf8_lossy(&hiku(&["--help"]).stdout).into_owned();
    assert!(help.contains("start") && help.contains("check"), "{help}");
    let help = String::from_utf8_lossy(&hiku(&["start", "--help"]).stdout).into_owned();
    assert!(help.contains("--config") && help.contains("--cores") && help.contains("hiku.json"), "{help}");
    assert!(help.contains("--no-pin"), "{help}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    for (shell, mark) in [("bash", "_hiku()"), ("zsh", "#compdef hiku"), ("fish", "complete -c hiku")] {
        let out = hiku(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && text.contains(mark), "{shell}: {text}");
        assert!(text.contains("no-pin") && text.contains("reload"), "{shell}: {text}");
    }
    assert_eq!(hiku(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell is a usage error");
    let dir = std::env::temp_dir().join(format!("hiku-man-{}", std::process::id()));
    let out = hiku(&["manpages", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let main = page("hiku.1");
    assert!(main.contains(".TH hiku 1"), "{main}");
    for told in [r"hiku\-start(1)", "EX_CONFIG", "78", "SIGUSR1", "HIKU_LOG", "/etc/hiku/hiku.json"] {
        assert!(main.contains(told), "hiku.1 says nothing of {told}: {main}");
    }
    assert!(page("hiku-start.1").contains(r"no\-pin"));
    assert!(page("hiku-check.1").contains("config"));
    assert!(!dir.join("hiku-help.1").exists(), "no page for clap's help subcommand");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The commit hiku was built from: the one `HIKU_COMMIT` gave the build,
/// else git's HEAD here.
fn commit() -> String {
    if std::env::var_os("HIKU_COMMIT").is_some() {
        return env!("HIKU_COMMIT").to_string();
    }
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match git {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}

#[test]
fn stderr_lines_carry_their_time_or_for_the_journal_their_priority() {
    use std::os::unix::fs::MetadataExt;
    let config = r#"{"balancer": "random", "workers": [], "timeout": 5}"#;
    for journal in [false, true] {
        let (mut cmd, path) = hiku_command(config, &["check"]);
        let log = path.with_file_name("stderr.log");
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            // Inherited but naming another file: not the journal.
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino() + 1));
        }
        let status = cmd.stdout(std::process::Stdio::null()).stderr(file).status().unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text.lines().find(|l| l.contains("unknown key \"timeout\" ignored")).expect(&text);
        match journal {
            true => assert!(line.starts_with("<4>hiku WARN "), "{line}"),
            false => {
                // 2026-12-07T13:30:01.123Z hiku WARN ...
                let (stamp, rest) = line.split_once(' ').unwrap();
                assert!(rest.starts_with("hiku WARN "), "{line}");
                let digits = |r: std::ops::Range<usize>| stamp[r].bytes().all(|b| b.is_ascii_digit());
                assert_eq!(stamp.len(), "2026-12-07T13:30:01.123Z".len(), "{line}");
                assert!(digits(0..4) && digits(5..7) && digits(8..10) && digits(11..13), "{line}");
                assert!(digits(14..16) && digits(17..19) && digits(20..23), "{line}");
                assert_eq!(
                    [&stamp[4..5], &stamp[10..11], &stamp[19..20], &stamp[23..]],
                    ["-", "T", ".", "Z"],
                    "{line}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[test]
fn check_accepts_the_sample_and_go_configs() {
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/hiku.json")).unwrap();
    let out = run(&sample, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK (pull-based balancer, 2 workers)"));
    // Keys the Go original never had are warned about, not fatal.
    let out = run(r#"{"balancer": "random", "workers": [], "timeout": 5}"#, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown key \"timeout\" ignored"), "{}", stderr(&out));
}

#[test]
fn bad_configs_exit_78_with_one_line_naming_the_problem() {
    let cases = [
        ("{\"port\": 9020,\n \"balancer\": }", "line 2 column"),
        (
            r#"{"balancer": "round-robin"}"#,
            "unknown \"balancer\" \"round-robin\"; valid names: pull-based, hashing-bounded, least-connections, random",
        ),
        (r#"{"workers": ["localhost:5000"]}"#, "\"localhost:5000\""),
        (r#"{"workers": ["http://a:1/path"]}"#, "\"http://a:1/path\""),
        (r#"{"port": 65536}"#, "\"port\" 65536 is out of range"),
        (r#"{"workers": ["http://a:1", "http://a:1/"]}"#, "http://a:1 is listed twice"),
        (r#"{"port": "9020"}"#, "\"port\": invalid type"),
        // What start used to find only when binding, check now finds too.
        (r#"{"host": "no-such-host.invalid"}"#, "cannot resolve \"host\" no-such-host.invalid"),
        (r#"{"admin": {"listen": "no-such-host.invalid:9"}}"#, "cannot resolve \"admin.listen\""),
        (r#"{"log": {"access": "/nonexistent-dir/access.log"}}"#, "cannot open \"log.access\" /nonexistent-dir/"),
    ];
    for (config, message) in cases {
        for command in ["check", "start"] {
            let out = run(config, &[command]);
            assert_eq!(out.status.code(), Some(78), "{command} {config}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(message), "{command} {config}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
            assert!(out.stdout.is_empty(), "nothing bound or printed: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

#[test]
fn check_print_shows_every_key_with_its_value_and_reads_back() {
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/hiku.json")).unwrap();
    let out = run(&sample, &["check", "--print"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("config OK (pull-based balancer, 2 workers)"), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    // The file's keys, and the defaults it leaves out.
    assert_eq!(printed["adaptive"]["initial"], 6);
    assert_eq!(printed["queue"]["limit"], 65536);
    assert_eq!(printed["health"]["eject_after"], 3);
    let again = run(&printed.to_string(), &["check", "--print"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&out.stdout));
    assert!(!stderr(&again).contains("unknown key"), "{}", stderr(&again));
}

#[test]
fn an_empty_or_missing_host_is_every_interface_and_an_open_admin_is_told() {
    // Go's ListenAndServe(":port"): IPv6 and IPv4.
    let hiku = support::Hiku::on(support::Driver::Auto).cores(1).start_config(r#"{"host": "", "port": 0}"#);
    assert!(hiku.addr.ip().is_unspecified(), "{}", hiku.addr);
    let port = hiku.addr.port();
    let health = support::Client::connect(([127, 0, 0, 1], port).into()).request("GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let health =
            support::Client::connect((std::net::Ipv6Addr::LOCALHOST, port).into()).request("GET", "/health", &[], b"");
        assert_eq!(health.status, 200);
    }
    let told = hiku.stderr();
    assert!(told.contains("[::]:0 (on every interface): there is no \"admin.token\""), "{told}");
    // With a token, or on loopback only, there is nothing to tell.
    for config in [r#"{"port": 0, "admin": {"token": "t0ken"}}"#, r#"{"host": "127.0.0.1", "port": 0}"#] {
        let hiku = support::Hiku::on(support::Driver::Auto).cores(1).start_config(config);
        assert!(!hiku.stderr().contains("admin.token"), "{config}: {}", hiku.stderr());
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let out = hiku(&["check", "-c", "/nonexistent/hiku.json"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("cannot read config file /nonexistent/hiku.json"), "{}", stderr(&out));
}

#[test]
fn runtime_and_usage_failures() {
    let out = run("{}", &["start", "--cores", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--cores 0"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&format!(r#"{{"host": "127.0.0.1", "port": {port}}}"#), &["start", "--cores", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", stderr(&out));
}

#[test]
fn a_second_hiku_on_the_same_port_does_not_start() {
    let first = support::Hiku::start("random", &[]);
    let config = format!(r#"{{"host": "127.0.0.1", "port": {}}}"#, first.addr.port());
    let out = run(&config, &["start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot listen on {}", first.addr)), "{}", stderr(&out));
}

#[test]
fn an_unknown_io_driver_is_refused_by_name() {
    let (mut cmd, path) = hiku_command(r#"{"host": "127.0.0.1", "port": 0}"#, &["start", "--cores", "1"]);
    let out = cmd.env("HIKU_IO", "kqueue").output().unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("auto, io_uring, epoll"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing bound: {}", String::from_utf8_lossy(&out.stdout));
}

/// The CPUs each shard thread (`hiku-<i>`) of process `pid` may run on,
/// from `Cpus_allowed_list` in /proc.
fn shard_cpus(pid: u32) -> Vec<String> {
    let mut cpus = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
        let shard = |n: String| n.strip_prefix("hiku-").is_some_and(|i| i.parse::<usize>().is_ok());
        if field("Name:").is_some_and(shard) {
            cpus.extend(field("Cpus_allowed_list:"));
        }
    }
    cpus.sort();
    cpus
}

#[test]
fn shards_are_pinned_to_a_core_each_unless_told_not_to() {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string()))
        .unwrap();
    for (extra, pinned) in [(None, true), (Some("--no-pin"), false)] {
        let mut args = vec!["start", "--cores", "2"];
        args.extend(extra);
        if std::thread::available_parallelism().unwrap().get() < 2 {
            args[2] = "1";
        }
        let (mut cmd, path) = hiku_command(r#"{"host": "127.0.0.1", "port": 0}"#, &args);
        let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        assert!(line.starts_with("listening on"), "{line}");
        let shards = if args[2] == "2" { 2 } else { 1 };
        // The shard threads start just after the line.
        let mut cpus = shard_cpus(child.id());
        // A thread pins itself once it runs: wait for that too.
        let settled =
            |cpus: &Vec<String>| cpus.len() >= shards && (!pinned || cpus.iter().all(|c| c.parse::<usize>().is_ok()));
        for _ in 0..100 {
            if settled(&cpus) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            cpus = shard_cpus(child.id());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        assert_eq!(cpus.len(), shards, "{cpus:?}");
        for cpu in &cpus {
            match pinned {
                true => assert!(cpu.parse::<usize>().is_ok(), "{extra:?}: a shard may run on {cpu}"),
                false => assert_eq!(cpu, &allowed, "{extra:?}"),
            }
        }
        if pinned && cpus.len() == 2 {
            assert_ne!(cpus[0], cpus[1], "two shards on one core");
        }
    }
}
