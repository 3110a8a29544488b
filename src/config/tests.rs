//! The config file: every key, its default, its range and its errors.

use super::*;

#[test]
fn defaults_match_the_go_original() {
    let c = Config::parse("{}").unwrap();
    assert_eq!(c, Config::default());
    // No host: every interface, as Go's ":9020" is (its decoder leaves
    // the string empty); "" says the same.
    assert_eq!((c.host.as_str(), c.port, c.balancer), ("", 9020, BalancerKind::PullBased));
    assert_eq!(Config::parse(r#"{"host": ""}"#).unwrap(), c);
    assert_eq!(c.listen_addr().unwrap(), "[::]:9020".parse().unwrap());
}

/// A config that sets every key hiku reads (none at its default).
const FULL: &str = r#"{"host": "127.0.0.1", "port": 9100, "balancer": "predictive",
        "workers": ["http://a:1", {"url": "http://b:2", "max_inflight": 3}], "workers_max_inflight": 5,
        "shutdown_grace_ms": 1000, "shutdown_announce_ms": 1500, "queue": {"limit": 7, "timeout_ms": 70},
        "timeouts_ms": {"client_header": 1, "client_idle": 2, "client_body": 3, "client_send": 4,
            "upstream_connect": 5, "upstream_response": 6},
        "retries": {"connect": 0, "overload": 3},
        "limits": {"max_header_bytes": 2048, "max_headers": 9, "max_body_bytes": 10, "buffer_body_bytes": 0,
            "max_connections": 11, "max_functions": 12, "max_connections_per_worker": 13},
        "admin": {"listen": "127.0.0.1:9101", "token": "t0ken"}, "destroy_sandbox": {"only_from_workers": false},
        "predictive": {"worker_cores": 2},
        "adaptive": {"enabled": false, "initial": 3, "min": 2, "low": 0.5, "high": 2.5, "min_call_ms": 0.333},
        "health": {"eject_after": 0, "max_ejected_percent": 10, "interval_ms": 250},
        "log": {"access": "/tmp/a.log"},
        "front": {"proxy_protocol": true, "trusted_proxies": ["10.0.0.0/8", "::1"]},
        "cluster": {"size": 2, "peers": ["127.0.0.1:9201"]}}"#;

#[test]
fn the_printed_config_says_every_key_and_reads_back_as_itself() {
    for text in ["{}", FULL] {
        let c = Config::parse(text).unwrap();
        let printed = c.to_json();
        let again = Config::parse(&printed.to_string()).unwrap();
        // All of it, but the token, which it never shows.
        let shown = c.admin.token.as_ref().map(|_| "(set)".to_string());
        let c = Config { admin: Admin { token: shown, ..c.admin.clone() }, ..c };
        assert_eq!(again, c, "{printed:#}");
        assert!(again.unknown_keys.is_empty() && again.recased_keys.is_empty(), "{printed:#}");
        // Every key hiku reads is there, defaults too.
        let sections = printed.as_object().unwrap();
        assert_eq!(sections.len(), 19, "{printed:#}");
    }
    let printed = Config::default().to_json();
    assert_eq!(printed["limits"]["max_connections"], Value::Null, "unset bounds are null");
    // The token is never shown.
    let c = Config::parse(r#"{"admin": {"token": "s3cret"}}"#).unwrap();
    assert_eq!(c.to_json()["admin"]["token"], "(set)");
    assert!(!c.to_json().to_string().contains("s3cret"));
}

#[test]
fn preflight_resolves_what_start_binds_and_warns_of_an_open_admin() {
    let open = |text: &str| Config::parse(text).unwrap().preflight();
    let warned = open("{}").unwrap();
    assert!(warned.len() == 1 && warned[0].contains("[::]:9020 (on every interface)"), "{warned:?}");
    assert!(warned[0].contains("admin.token"), "{warned:?}");
    assert_eq!(open(r#"{"host": "127.0.0.1"}"#).unwrap(), Vec::<String>::new(), "loopback only");
    assert_eq!(open(r#"{"admin": {"token": "t"}}"#).unwrap(), Vec::<String>::new(), "a token");
    assert_eq!(open(r#"{"admin": {"listen": "127.0.0.1:9101"}}"#).unwrap(), Vec::<String>::new(), "admin apart");
    let warned = open(r#"{"host": "127.0.0.1", "admin": {"listen": "0.0.0.0:9101"}}"#).unwrap();
    assert!(warned[0].contains("0.0.0.0:9101"), "{warned:?}");
    let err = |text: &str| open(text).unwrap_err().0;
    assert!(err(r#"{"host": "no-such-host.invalid"}"#).contains("cannot resolve \"host\" no-such-host.invalid"));
    let e = err(r#"{"admin": {"listen": "no-such-host.invalid:1"}}"#);
    assert!(e.contains("cannot resolve \"admin.listen\""), "{e}");
    let e = err(r#"{"log": {"access": "/nonexistent-dir/access.log"}}"#);
    assert!(e.contains("cannot open \"log.access\" /nonexistent-dir/access.log"), "{e}");
}

#[test]
fn reads_every_key_and_reports_unknown_ones() {
    let c = Config::parse(
        r#"{"host":"0.0.0.0","port":8080,"balancer":"random","workers":["http://a:1","http://B:2/"],"x":1}"#,
    )
    .unwrap();
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 8080);
    assert_eq!(c.balancer, BalancerKind::Random);
    let urls: Vec<&str> = c.workers.iter().map(|w| w.as_str()).collect();
    assert_eq!(urls, ["http://a:1", "http://b:2"]);
    assert_eq!(c.unknown_keys, ["x"]);
}

#[test]
fn reads_what_go_reads() {
    // Keys in any case (an exact match first), the last of repeated
    // keys, null as absent, and nothing after the first value matters.
    let c = Config::parse(r#"{"Port": 8080, "BALANCER": "random", "workers": null, "port": 1, "port": 7} trailing"#)
        .unwrap();
    assert_eq!((c.port, c.balancer, c.workers.len()), (7, BalancerKind::Random, 0));
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    let c = Config::parse(r#"{"Workers": ["http://a:1"], "Host": "0.0.0.0"}"#).unwrap();
    assert_eq!((c.host.as_str(), c.workers.len()), ("0.0.0.0", 1));
    let read_as =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(w, r)| (w.to_string(), r.to_string())).collect::<Vec<_>>();
    assert_eq!(c.recased_keys, read_as(&[("Host", "host"), ("Workers", "workers")]));
    assert!(Config::parse("").unwrap_err().0.contains("empty"));
    assert!(Config::parse("[]").unwrap_err().0.contains("line 1 column"));
}

#[test]
fn errors_name_the_problem() {
    let err = |t: &str| Config::parse(t).unwrap_err().0;
    assert!(err("{\"port\": 1,\n}").contains("line 2 column 1"));
    assert!(err(r#"{"port": 70000}"#).contains("\"port\" 70000 is out of range"));
    assert!(err(r#"{"port": -1}"#).contains("\"port\""));
    assert!(err(r#"{"port": "9020"}"#).contains("\"port\": invalid type: string"));
    assert!(err(r#"{"workers": "http://a:1"}"#).contains("\"workers\": invalid type"));
    let e = err(r#"{"balancer": "round-robin"}"#);
    assert!(e.contains("round-robin") && e.contains("pull-based"), "{e}");
    assert!(err(r#"{"workers": ["localhost:5000"]}"#).contains("\"localhost:5000\""));
    assert!(err(r#"{"workers": ["http://a:1", "http://A:1/"]}"#).contains("http://a:1 is listed twice"));
}

#[test]
fn timeouts_and_retries_have_safe_defaults_and_are_checked() {
    let c = Config::parse("{}").unwrap();
    let ms = |d: Duration| d.as_millis();
    let t = c.timeouts;
    assert_eq!(
        [t.client_header, t.client_idle, t.client_body, t.upstream_connect, t.upstream_response].map(ms),
        [10_000, 60_000, 30_000, 1_000, 300_000]
    );
    assert_eq!(ms(t.client_send), 60_000);
    assert_eq!((c.retries.connect, c.retries.overload), (2, 1));
    assert_eq!(ms(c.shutdown_grace), 30_000);
    assert_eq!(ms(Config::parse(r#"{"shutdown_grace_ms": 0}"#).unwrap().shutdown_grace), 0);

    let c = Config::parse(
        r#"{"timeouts_ms": {"client_header": 5, "upstream_response": 7000, "client_headr": 1},
            "retries": {"connect": 0, "overload": 3, "overlaod": 1}}"#,
    )
    .unwrap();
    assert_eq!((ms(c.timeouts.client_header), ms(c.timeouts.upstream_response)), (5, 7000));
    assert_eq!(ms(c.timeouts.client_idle), 60_000, "the others keep their defaults");
    assert_eq!((c.retries.connect, c.retries.overload), (0, 3));
    assert_eq!(c.unknown_keys, ["timeouts_ms.client_headr", "retries.overlaod"]);
    assert_eq!(Config::parse(r#"{"timeouts_ms": null, "retries": {}}"#).unwrap(), Config::default());

    let err = |t: &str| Config::parse(t).unwrap_err().0;
    for (bad, message) in [
        (r#"{"timeouts_ms": {"client_idle": 0}}"#, "\"timeouts_ms.client_idle\" must be a whole number from 1 to"),
        (r#"{"timeouts_ms": {"client_body": -5}}"#, "\"timeouts_ms.client_body\" must be"),
        (r#"{"timeouts_ms": {"upstream_connect": 1.5}}"#, "\"timeouts_ms.upstream_connect\" must be"),
        (r#"{"timeouts_ms": {"upstream_response": "5s"}}"#, "\"timeouts_ms.upstream_response\" must be"),
        (r#"{"timeouts_ms": {"client_header": 86400001}}"#, "from 1 to 86400000"),
        (r#"{"timeouts_ms": 5}"#, "\"timeouts_ms\" must be an object"),
        (r#"{"retries": {"connect": 17}}"#, "\"retries.connect\" must be a whole number from 0 to 16"),
        (r#"{"retries": {"overload": -1}}"#, "\"retries.overload\" must be a whole number from 0 to 16"),
        (r#"{"retries": []}"#, "\"retries\" must be an object"),
        (r#"{"shutdown_grace_ms": -1}"#, "\"shutdown_grace_ms\" must be a whole number from 0 to 86400000"),
    ] {
        assert!(err(bad).contains(message), "{bad}: {}", err(bad));
    }
}

#[test]
fn limits_have_safe_defaults_and_are_checked() {
    let l = Config::parse("{}").unwrap().limits;
    assert_eq!(
        (l.max_header_bytes, l.max_headers, l.max_body_bytes, l.buffer_body_bytes, l.max_connections),
        (16384, 100, 64 << 20, 65536, None)
    );
    let c = Config::parse(
        r#"{"limits": {"max_header_bytes": 2048, "max_headers": 10, "max_body_bytes": 0, "buffer_body_bytes": 0,
            "max_connections": 5, "x": 1}}"#,
    )
    .unwrap();
    let l = c.limits;
    assert_eq!(
        (l.max_header_bytes, l.max_headers, l.max_body_bytes, l.buffer_body_bytes, l.max_connections),
        (2048, 10, 0, 0, Some(5))
    );
    assert_eq!(c.unknown_keys, ["limits.x"]);
    let err = |t: &str| Config::parse(t).unwrap_err().0;
    for (bad, message) in [
        (
            r#"{"limits": {"max_header_bytes": 100000}}"#,
            "\"limits.max_header_bytes\" must be a whole number from 1024 to 16384",
        ),
        (r#"{"limits": {"max_headers": 0}}"#, "\"limits.max_headers\" must be a whole number from 1 to 100"),
        (r#"{"limits": {"max_body_bytes": -1}}"#, "\"limits.max_body_bytes\""),
        (r#"{"limits": {"max_connections": 0}}"#, "\"limits.max_connections\" must be a whole number from 1"),
        (
            r#"{"limits": {"buffer_body_bytes": 16777217}}"#,
            "\"limits.buffer_body_bytes\" must be a whole number from 0 to 16777216",
        ),
        (r#"{"limits": {"max_functions": 4}}"#, "\"limits.max_functions\" must be a whole number from 8 to 67108864"),
    ] {
        assert!(err(bad).contains(message), "{bad}: {}", err(bad));
    }
}

#[test]
fn workers_may_have_a_capacity_and_calls_a_queue() {
    let c = Config::parse("{}").unwrap();
    assert_eq!((c.default_capacity(), c.queue.limit, c.queue.timeout.as_millis()), (None, 65_536, 10_000));
    let c = Config::parse(
        r#"{"workers": ["http://a:1", {"url": "http://b:1", "max_inflight": 8}, {"url": "http://c:1"}],
            "workers_max_inflight": 32, "queue": {"limit": 5, "timeout_ms": 250}}"#,
    )
    .unwrap();
    let url = |u: &str| WorkerUrl::parse(u).unwrap();
    assert_eq!(c.workers, [url("http://a:1"), url("http://b:1"), url("http://c:1")]);
    assert_eq!(c.capacities().of(&url("http://a:1")), Some(32));
    assert_eq!(c.capacities().of(&url("http://b:1")), Some(8));
    assert_eq!(c.capacities().of(&url("http://d:1")), Some(32), "a worker added later");
    assert_eq!((c.queue.limit, c.queue.timeout.as_millis()), (5, 250));
    // The connection cap bounds every capacity, and is one by itself.
    let c = Config::parse(
        r#"{"workers": [{"url": "http://b:1", "max_inflight": 8}], "limits": {"max_connections_per_worker": 4}}"#,
    )
    .unwrap();
    assert_eq!((c.capacities().of(&url("http://b:1")), c.default_capacity()), (Some(4), Some(4)));
    let err = |t: &str| Config::parse(t).unwrap_err().0;
    for (bad, message) in [
        (r#"{"workers": [{"url": "http://b:1", "max_inflight": 0}]}"#, "max_inflight of http://b:1 must be"),
        (r#"{"workers": [{"max_inflight": 3}]}"#, "each must be a URL or {\"url\": URL"),
        (r#"{"workers": [{"url": "http://b:1", "weight": 3}]}"#, "unknown key \"weight\""),
        (r#"{"workers": [3]}"#, "each must be a URL"),
        (r#"{"workers": ["http://b:1", {"url": "http://B:1"}]}"#, "http://b:1 is listed twice"),
        (r#"{"workers_max_inflight": 0}"#, "\"workers_max_inflight\" must be a whole number from 1 to 1000000"),
        (r#"{"queue": {"timeout_ms": 0}}"#, "\"queue.timeout_ms\" must be"),
        (r#"{"queue": {"limit": -1}}"#, "\"queue.limit\" must be"),
        (r#"{"limits": {"max_connections_per_worker": 0}}"#, "\"limits.max_connections_per_worker\" must be"),
    ] {
        assert!(err(bad).contains(message), "{bad}: {}", err(bad));
    }
    assert_eq!(Config::parse(r#"{"queue": {"size": 1}}"#).unwrap().unknown_keys, ["queue.size"]);
}

#[test]
fn health_says_when_workers_are_ejected() {
    let d = Config::parse("{}").unwrap().health;
    assert_eq!((d.eject_after, d.max_ejected_percent), (3, 50));
    assert_eq!(d.interval, None, "no active probing by default");
    let c = Config::parse(r#"{"health": {"eject_after": 0, "max_ejected_percent": 100, "interval_ms": 250}}"#)
        .unwrap()
        .health;
    assert_eq!((c.eject_after, c.max_ejected_percent, c.interval), (0, 100, Some(Duration::from_millis(250))));
    let e = Config::parse(r#"{"health": {"interval_ms": 10}}"#).unwrap_err().0;
    assert!(e.contains("\"health.interval_ms\" must be a whole number from 100 to"), "{e}");
    let e = Config::parse(r#"{"health": {"max_ejected_percent": 101}}"#).unwrap_err().0;
    assert!(e.contains("\"health.max_ejected_percent\" must be a whole number from 0 to 100"), "{e}");
}

#[test]
fn the_access_log_is_a_path() {
    assert_eq!(Config::parse("{}").unwrap().log.access, None);
    let c = Config::parse(r#"{"log": {"access": "/var/log/hiku/access.log"}}"#).unwrap();
    assert_eq!(c.log.access.as_deref(), Some(Path::new("/var/log/hiku/access.log")));
    for bad in [r#"{"log": {"access": ""}}"#, r#"{"log": {"access": 3}}"#] {
        assert!(Config::parse(bad).unwrap_err().0.contains("\"log.access\" must be a file path"), "{bad}");
    }
}

#[test]
fn the_predictive_balancer_is_told_the_workers_cores() {
    assert_eq!(Config::parse("{}").unwrap().predictive.worker_cores, 4);
    let c = Config::parse(r#"{"balancer": "predictive", "predictive": {"worker_cores": 16}}"#).unwrap();
    assert_eq!((c.balancer, c.predictive.worker_cores), (BalancerKind::Predictive, 16));
    let e = Config::parse(r#"{"predictive": {"worker_cores": 0}}"#).unwrap_err().0;
    assert!(e.contains("\"predictive.worker_cores\" must be a whole number from 1 to 4096"), "{e}");
    let c = Config::parse(r#"{"predictive": {"cores": 2}}"#).unwrap();
    assert_eq!(c.unknown_keys, ["predictive.cores"]);
}

#[test]
fn every_worker_has_an_adaptive_limit_unless_it_is_turned_off() {
    let d = Config::parse("{}").unwrap().adaptive;
    let tuning = crate::worker::Tuning { initial: 6, min: 1, low: 1.0, high: 2.0, min_call_us: 1000, instances: 1 };
    assert_eq!((d.enabled, d.tuning, d.tuning()), (true, tuning, Some(tuning)));
    let text = r#"{"adaptive": {"initial": 4, "min": 2, "low": 0.5, "high": 3, "min_call_ms": 0.25}}"#;
    let c = Config::parse(text).unwrap().adaptive;
    assert_eq!(
        c.tuning(),
        Some(crate::worker::Tuning { initial: 4, min: 2, low: 0.5, high: 3.0, min_call_us: 250, instances: 1 })
    );
    assert_eq!(Config::parse(r#"{"adaptive": {"enabled": false}}"#).unwrap().adaptive.tuning(), None);
    for (text, error) in [
        (r#"{"adaptive": {"low": 2, "high": 2}}"#, "\"adaptive.low\" (2) must be less than \"adaptive.high\" (2)"),
        (r#"{"adaptive": {"high": -1}}"#, "\"adaptive.high\" must be a number from 0 to 1000"),
        (r#"{"adaptive": {"low": "1"}}"#, "\"adaptive.low\" must be a number from 0 to 1000"),
        (r#"{"adaptive": {"min": 0}}"#, "\"adaptive.min\" must be a whole number from 1 to 1000000"),
        (r#"{"adaptive": {"enabled": 1}}"#, "\"adaptive.enabled\" must be true or false"),
    ] {
        let e = Config::parse(text).unwrap_err().0;
        assert!(e.contains(error), "{text}: {e}");
    }
    let next = Config::parse(r#"{"adaptive": {"high": 3}}"#).unwrap();
    assert_eq!(Config::default().changes(&next).per_call, ["adaptive"]);
    // In a tier of two, each instance holds its part of the excess.
    let tier = Config::parse(r#"{"cluster": {"size": 2}}"#).unwrap().adaptive_tuning().unwrap();
    assert_eq!((tier.initial, tier.low, tier.high, tier.instances), (3, 0.5, 1.0, 2));
}

#[test]
fn admin_protection_is_read_and_checked() {
    let c = Config::parse("{}").unwrap();
    assert_eq!((c.admin.token, c.destroy_sandbox.only_from_workers), (None, true));
    let c =
        Config::parse(r#"{"admin": {"token": "s3cret"}, "destroy_sandbox": {"only_from_workers": false}}"#).unwrap();
    assert_eq!((c.admin.token.as_deref(), c.destroy_sandbox.only_from_workers), (Some("s3cret"), false));
    let err = |t: &str| Config::parse(t).unwrap_err().0;
    assert!(err(r#"{"admin": {"token": ""}}"#).contains("\"admin.token\" must be a non-empty string"));
    assert!(err(r#"{"admin": {"token": "a b"}}"#).contains("\"admin.token\""));
    assert!(err(r#"{"destroy_sandbox": {"only_from_workers": "no"}}"#).contains("must be true or false"));
    let c = Config::parse(r#"{"admin": {"listen": "127.0.0.1:9021"}}"#).unwrap();
    assert_eq!(c.admin_addr().unwrap(), Some("127.0.0.1:9021".parse().unwrap()));
    assert_eq!(Config::parse("{}").unwrap().admin_addr().unwrap(), None);
    for bad in [r#""9021""#, r#""host:""#, r#"":9021""#, r#""h:70000""#, "9021"] {
        let e = err(&format!(r#"{{"admin": {{"listen": {bad}}}}}"#));
        assert!(e.contains("\"admin.listen\" must be \"host:port\""), "{bad}: {e}");
    }
}

#[test]
fn unknown_keys_are_those_never_asked_for() {
    let c = Config::parse(
        r#"{"limits": {"max_body_bytes": 5, "max_bodies": 1}, "log": null, "other": {"a": 1}, "health": {"x": 2}}"#,
    )
    .unwrap();
    assert_eq!(c.limits.max_body_bytes, 5);
    assert_eq!(c.unknown_keys, ["other", "limits.max_bodies", "health.x"]);
}

#[test]
fn changes_name_what_takes_a_restart_and_what_applies_per_call() {
    let running = Config::default();
    let file = r#"{"port": 1, "limits": {"max_connections": 5, "max_body_bytes": 9}, "admin": {"token": "t"}}"#;
    let next = Config::parse(file).unwrap();
    assert_eq!(running.changes(&next).start_bound, ["port", "limits.max_connections"]);
    let kept = running.keeping_start_bound(next);
    assert_eq!((kept.port, kept.limits.max_connections, kept.limits.max_body_bytes), (9020, None, 9));
    assert_eq!(running.changes(&kept), Changes { start_bound: vec![], per_call: vec!["limits", "admin.token"] });
}

#[test]
fn a_front_is_trusted_by_address_or_network() {
    assert_eq!(Config::parse("{}").unwrap().front, Front::default());
    let c = Config::parse(r#"{"front": {"proxy_protocol": true, "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}}"#)
        .unwrap();
    assert!(c.front.proxy_protocol);
    assert!(c.front.trusts("10.1.2.3".parse().unwrap()) && c.front.trusts("127.0.0.1".parse().unwrap()));
    assert!(!c.front.trusts("192.168.0.1".parse().unwrap()));
    let e = Config::parse(r#"{"front": {"proxy_protocol": true}}"#).unwrap_err().0;
    assert!(e.contains("needs \"front.trusted_proxies\""), "{e}");
    let e = Config::parse(r#"{"front": {"trusted_proxies": ["10.0.0.0/40"]}}"#).unwrap_err().0;
    assert!(e.contains("front.trusted_proxies") && e.contains("10.0.0.0/40"), "{e}");
    let e = Config::parse(r#"{"front": {"proxy_protocol": "yes"}}"#).unwrap_err().0;
    assert!(e.contains("\"front.proxy_protocol\" must be true or false"), "{e}");
}

#[test]
fn a_stop_may_be_announced_first() {
    assert_eq!(Config::parse("{}").unwrap().shutdown_announce, Duration::ZERO);
    let c = Config::parse(r#"{"shutdown_announce_ms": 1500}"#).unwrap();
    assert_eq!(c.shutdown_announce, Duration::from_millis(1500));
    assert_eq!(Config::default().changes(&c).start_bound, ["shutdown_announce_ms"]);
    let e = Config::parse(r#"{"shutdown_announce_ms": -1}"#).unwrap_err().0;
    assert!(e.contains("\"shutdown_announce_ms\" must be a whole number from 0 to 86400000"), "{e}");
}

#[test]
fn a_tier_shares_each_workers_capacity() {
    let file = r#"{"workers": ["http://a:1", {"url": "http://b:1", "max_inflight": 10}], "workers_max_inflight": 9,
                  "cluster": {"size": 3, "peers": ["10.0.0.12:9030", "hiku-3:9030"]}}"#;
    let c = Config::parse(file).unwrap();
    let url = |u: &str| WorkerUrl::parse(u).unwrap();
    // Each of three instances takes its part, rounded down: never more than the worker's.
    assert_eq!((c.capacities().of(&url("http://a:1")), c.capacities().of(&url("http://b:1"))), (Some(3), Some(3)));
    assert_eq!(c.cluster.peers, ["10.0.0.12:9030", "hiku-3:9030"]);
    let tiny = Config::parse(r#"{"workers_max_inflight": 2, "cluster": {"size": 4}}"#).unwrap();
    assert_eq!(tiny.capacities().default, Some(1), "at least one call each");
    assert_eq!(Config::parse("{}").unwrap().cluster, Cluster::default());
    for (bad, says) in
        [(r#"{"cluster": {"size": 0}}"#, "cluster.size"), (r#"{"cluster": {"peers": ["x"]}}"#, "cluster.peers")]
    {
        let e = Config::parse(bad).unwrap_err().0;
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn a_front_names_clients_one_way_or_the_other() {
    let c = Config::parse(r#"{"front": {"forwarded_for": true, "trusted_proxies": ["10.0.0.1"]}}"#).unwrap();
    assert!(c.front.forwarded_for && !c.front.proxy_protocol);
    let both = r#"{"front": {"forwarded_for": true, "proxy_protocol": true, "trusted_proxies": ["10.0.0.1"]}}"#;
    assert!(Config::parse(both).unwrap_err().0.contains("one or the other"));
    let e = Config::parse(r#"{"front": {"forwarded_for": true}}"#).unwrap_err().0;
    assert!(e.contains("\"front.forwarded_for\" needs \"front.trusted_proxies\""), "{e}");
}

#[test]
fn keys_of_every_section_match_in_any_case_and_are_named_when_they_do() {
    let c = Config::parse(
        r#"{"Queue": {"Limit": 5, "size": 1}, "timeouts_ms": {"Upstream_Connect": 700}, "adaptive": {"enabled": false}}"#,
    )
    .unwrap();
    assert_eq!(c.queue.limit, 5);
    assert_eq!(c.timeouts.upstream_connect, Duration::from_millis(700));
    assert!(!c.adaptive.enabled);
    assert_eq!(c.unknown_keys, ["Queue.size"]);
    let recased: Vec<(&str, &str)> = c.recased_keys.iter().map(|(w, r)| (w.as_str(), r.as_str())).collect();
    assert_eq!(
        recased,
        [
            ("Queue", "queue"),
            ("Queue.Limit", "queue.limit"),
            ("timeouts_ms.Upstream_Connect", "timeouts_ms.upstream_connect")
        ]
    );
    let warnings = c.key_warnings();
    assert_eq!(warnings[0], "unknown key \"Queue.size\" ignored");
    assert!(warnings[1].starts_with("key \"Queue\" read as \"queue\""), "{warnings:?}");
    // An exact match wins over one in another case.
    let c = Config::parse(r#"{"queue": {"limit": 3, "LIMIT": 9}}"#).unwrap();
    assert_eq!(c.queue.limit, 3);
    assert!(c.recased_keys.is_empty(), "{:?}", c.recased_keys);
    // Errors name the key as hiku knows it.
    let e = Config::parse(r#"{"Queue": {"Limit": -1}}"#).unwrap_err();
    assert!(e.0.contains("\"queue.limit\""), "{e}");
}

#[test]
fn the_sample_configs_use_only_keys_hiku_reads() {
    for (name, text) in [
        ("config/hiku.json", include_str!("../../config/hiku.json")),
        ("config/tier/instance.json", include_str!("../../config/tier/instance.json")),
    ] {
        let c = Config::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.unknown_keys.is_empty() && c.recased_keys.is_empty(), "{name}: {:?}", c.key_warnings());
    }
    let tier = Config::parse(include_str!("../../config/tier/instance.json")).unwrap();
    // What config/tier/haproxy.cfg expects of an instance.
    assert!(tier.front.proxy_protocol && tier.admin.token.is_some());
    assert_eq!((tier.port, tier.admin.listen.as_deref()), (9020, Some("10.0.0.11:9030")));
    assert!(tier.shutdown_announce >= Duration::from_millis(1500), "longer than the front's checks");
}

/// The keys a config section of the README's table names in its first
/// column (`| \`a\`, \`b\` | ...`), in the table under "## Config".
fn readme_keys() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let table = readme.split("\n## Config\n").nth(1).expect("README has ## Config");
    let table = table.split("\n#").next().unwrap();
    let mut keys = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap().trim_start_matches("| ");
        keys.extend(first.split(", ").map(|k| k.trim_matches('`').to_string()));
    }
    keys
}

#[test]
fn the_readme_lists_every_key_the_config_reads_and_no_other() {
    // The keys hiku asks the file for (sections aside)...
    let doc = Document::parse("{}").unwrap();
    Config::read(&doc).unwrap();
    let asked = doc.asked();
    let is_section = |k: &String| asked.iter().any(|other| other.starts_with(&format!("{k}.")));
    let mut read: Vec<String> = asked.iter().filter(|k| !is_section(k)).cloned().collect();
    read.sort();
    read.dedup();
    // ... are those the printed config names...
    let mut printed = Vec::new();
    for (key, value) in Config::default().to_json().as_object().unwrap() {
        match value.as_object() {
            Some(section) => printed.extend(section.keys().map(|k| format!("{key}.{k}"))),
            None => printed.push(key.clone()),
        }
    }
    printed.sort();
    assert_eq!(printed, read, "check --print names every key hiku reads");
    // ... and those the README's table lists.
    let mut listed = readme_keys();
    listed.sort();
    let missing: Vec<&String> = read.iter().filter(|k| !listed.contains(k)).collect();
    let extra: Vec<&String> = listed.iter().filter(|k| !read.contains(k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "README's key table lacks {missing:?}, has unread {extra:?}");
}

#[test]
fn the_readme_says_which_keys_a_reload_applies_and_which_take_a_restart() {
    // Every key changed: the lists of what takes a restart and what is
    // read per call, as reload reports them.
    let every = Config::parse(FULL).unwrap();
    let changes = Config::default().changes(&every);
    let readme = include_str!("../../README.md");
    let hup = readme.split("**SIGHUP**").nth(1).unwrap().split("The outcome is logged").next().unwrap();
    let bullet = |start: &str| -> Vec<String> {
        let text = hup.split(start).nth(1).unwrap().split("\n- ").next().unwrap();
        let ticked = text.split('`').skip(1).step_by(2);
        ticked.map(str::to_string).collect()
    };
    let restart = bullet("what is bound at start");
    assert_eq!(restart, changes.start_bound, "README's restart-only keys");
    let per_request = bullet("everything else read per request");
    for key in changes.per_call.iter().filter(|k| **k != "capacity") {
        let named = per_request.iter().any(|k| k == key) || hup.contains(&format!("**{key}**"));
        assert!(named, "README's reload list leaves out {key}");
    }
}

#[test]
fn every_key_has_a_place_in_what_a_reload_does() {
    // Each key on its own set as FULL sets it (its whole section, where one
    // key alone does not load): a reload keeps it (bound at start), applies
    // it per call, or, for the balancer, the workers and the predictive
    // balancer's view, builds the placement anew, which it does apart.
    let full: Value = serde_json::from_str(FULL).unwrap();
    let default = Config::default().to_json();
    let placement = ["balancer", "workers", "predictive.worker_cores"];
    for (section, value) in default.as_object().unwrap() {
        let keys: Vec<Option<&String>> = match value.as_object() {
            Some(keys) => keys.keys().map(Some).collect(),
            None => vec![None],
        };
        for key in keys {
            let (mut one, name) = (default.clone(), key.map_or(section.clone(), |k| format!("{section}.{k}")));
            // FULL's value; a flag, the other one than the default (FULL
            // leaves one out that its other keys exclude).
            let other = |set: &Value, was: &Value| match was {
                Value::Bool(d) => Value::Bool(!d),
                _ => set.clone(),
            };
            match key {
                Some(k) => one[section][k] = other(&full[section][k], &default[section][k]),
                None => one[section] = other(&full[section], &default[section]),
            }
            let next = Config::parse(&one.to_string()).or_else(|_| {
                one[section] = full[section].clone();
                Config::parse(&one.to_string())
            });
            let changes = Config::default().changes(&next.unwrap());
            let reported = !changes.start_bound.is_empty() || !changes.per_call.is_empty();
            assert!(reported || placement.contains(&name.as_str()), "a reload says nothing of {name}");
        }
    }
    // The start-bound keys are keys, and a reload keeps every one of them.
    let every = Config::parse(FULL).unwrap();
    for (key, _) in &START_BOUND {
        assert!(readme_keys().iter().any(|k| k == key), "{key} is no key");
    }
    assert_eq!(every.keeping_start_bound(Config::default()).changes(&Config::default()).start_bound.len(), 7);
    assert!(Config::default().changes(&Config::default().keeping_start_bound(every)).start_bound.is_empty());
}
