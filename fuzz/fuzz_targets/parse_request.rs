//! A request head, parsed, and (if it parses) rewritten for a worker and
//! its buffered body framed: nothing may panic, and a head that parses is
//! never longer than the input.
#![no_main]

use hiku::http::{buffered_body_len, empty_headers, parse_request, write_request_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = empty_headers();
    if let Ok(Some(req)) = parse_request(data, &mut headers) {
        assert!(req.head_len <= data.len());
        let mut out = Vec::new();
        write_request_head(&mut out, &req, "worker:1", b"127.0.0.1");
        assert!(out.ends_with(b"\r\n\r\n"));
        let _ = buffered_body_len(&data[req.head_len..], req.framing);
    }
});
