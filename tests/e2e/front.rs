//! Behind a front (HAProxy): the PROXY protocol listener, which takes the
//! client's address from a trusted front only.

use serde_json::json;

use crate::support::{Client, Driver, Hiku, Worker};

/// A v2 PROXY header (TCP over IPv4) naming `client` as the source.
fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&9020u16.to_be_bytes());
    h
}

on_both_drivers!(a_proxy_protocol_listener_takes_the_client_from_a_trusted_front);
fn a_proxy_protocol_listener_takes_the_client_from_a_trusted_front(driver: Driver) {
    let w = Worker::start();
    let front = json!({"front": {"proxy_protocol": true, "trusted_proxies": ["127.0.0.1/32", "::1"]}});
    let hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], front);
    let destroy = |c: &mut Client| {
        let body = format!("{{\"host\": \"{}\"}}", &w.url[7..]);
        c.request("POST", "/destroySandbox/f", &[], body.as_bytes())
    };

    // A v1 header naming a client that is no worker: its calls go through,
    // with it in X-Forwarded-For, and it may not report evictions.
    let mut c = hiku.client();
    c.send(b"PROXY TCP4 10.9.9.9 127.0.0.1 5555 9020\r\n");
    assert_eq!(c.request("POST", "/run/f", &[], b"").status, 200);
    assert_eq!(w.last().header("x-forwarded-for"), Some("10.9.9.9"));
    let refused = destroy(&mut c);
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("not from 10.9.9.9"), "{}", refused.text());

    // A v2 header naming the worker's address: its report is taken, on a
    // connection that goes on (keep-alive) as the worker.
    let mut c = hiku.client();
    let mut first = v2_header([127, 0, 0, 1], 4242);
    first.extend_from_slice(b"POST /run/f HTTP/1.1\r\nHost: hiku\r\nContent-Length: 0\r\n\r\n");
    c.send(&first);
    assert_eq!(c.read(false).status, 200, "header and request in one segment");
    assert_eq!((destroy(&mut c).status, w.last().header("x-forwarded-for")), (200, Some("127.0.0.1")));
    // A health check (v2 LOCAL): the front's own connection.
    let mut c = hiku.client();
    c.send(&[&b"\r\n\r\n\0\r\nQUIT\n"[..], &[0x20, 0x00, 0, 0]].concat());
    assert_eq!(c.request("GET", "/status", &[], b"").status, 200);

    // No header, or one that is garbage: closed without an answer.
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: hiku\r\nContent-Length: 0\r\n\r\n");
    assert!(c.is_closed(), "a connection without its PROXY header is refused");
    let mut c = hiku.client();
    c.send(b"PROXY TCP4 10.9.9.9 nonsense\r\n");
    assert!(c.is_closed(), "a malformed PROXY header is refused");
}

on_both_drivers!(a_proxy_header_from_an_untrusted_peer_is_refused);
fn a_proxy_header_from_an_untrusted_peer_is_refused(driver: Driver) {
    // The worker would like to be believed: 127.0.0.1 is no trusted front.
    let w = Worker::start();
    let front = json!({"front": {"proxy_protocol": true, "trusted_proxies": ["10.0.0.0/8"]}});
    let hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], front);
    let mut c = hiku.client();
    c.send(
        b"PROXY TCP4 127.0.0.1 127.0.0.1 5555 9020\r\nPOST /run/f HTTP/1.1\r\nHost: hiku\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(c.is_closed(), "refused, and nothing forwarded");
    assert_eq!(w.requests(), 0);
    // Without `front.proxy_protocol`, a PROXY line is just a bad request.
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
    let mut c = hiku.client();
    c.send(
        b"PROXY TCP4 127.0.0.1 127.0.0.1 5555 9020\r\nPOST /run/f HTTP/1.1\r\nHost: hiku\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(c.read(false).status, 400);
}

on_both_drivers!(x_forwarded_for_names_the_client_from_a_trusted_front_only);
fn x_forwarded_for_names_the_client_from_a_trusted_front_only(driver: Driver) {
    let w = Worker::start();
    let destroy = |hiku: &Hiku, xff: &[(&str, &str)]| {
        let body = format!("{{\"host\": \"{}\"}}", &w.url[7..]);
        hiku.client().request("POST", "/destroySandbox/f", xff, body.as_bytes())
    };
    // 127.0.0.1 is a trusted front here: the last X-Forwarded-For entry is the client.
    let front = json!({"front": {"forwarded_for": true, "trusted_proxies": ["127.0.0.1"]}});
    let hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], front);
    let named = [("X-Forwarded-For", "1.2.3.4, 10.9.9.9")];
    let refused = destroy(&hiku, &named);
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("not from 10.9.9.9"), "{}", refused.text());
    assert_eq!(hiku.client().request("POST", "/run/f", &named, b"").status, 200);
    // The worker sees the chain, and the front's address added by hiku.
    assert_eq!(w.last().header("x-forwarded-for"), Some("1.2.3.4, 10.9.9.9, 127.0.0.1"));
    // Without the field, the front itself is the client (here a worker's address).
    assert_eq!(destroy(&hiku, &[]).status, 200);
    // Requests on one connection may come from different clients (a front pools connections).
    let mut c = hiku.client();
    let body = format!("{{\"host\": \"{}\"}}", &w.url[7..]);
    let as_worker = c.request("POST", "/destroySandbox/f", &[("X-Forwarded-For", "127.0.0.1")], body.as_bytes());
    let as_other = c.request("POST", "/destroySandbox/f", &[("X-Forwarded-For", "10.9.9.9")], body.as_bytes());
    assert_eq!((as_worker.status, as_other.status), (200, 403));

    // From a peer that is no trusted front, X-Forwarded-For is ignored: no
    // client can pass itself off as a worker, nor hide behind another name.
    let front = json!({"front": {"forwarded_for": true, "trusted_proxies": ["10.0.0.0/8"]}});
    let hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], front);
    assert_eq!(destroy(&hiku, &[("X-Forwarded-For", "10.9.9.9")]).status, 200, "the peer, a worker's address, counts");
    assert_eq!(hiku.client().request("POST", "/run/f", &[("X-Forwarded-For", "10.9.9.9")], b"").status, 200);
    assert_eq!(w.last().header("x-forwarded-for"), Some("10.9.9.9, 127.0.0.1"));
}
