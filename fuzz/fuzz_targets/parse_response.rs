//! A worker's response head, parsed (as the answer to a HEAD request or
//! not, by the first byte), and if it parses rewritten for the client in
//! every way hiku may: nothing may panic.
#![no_main]

use hiku::http::{empty_headers, parse_response, write_response_head, Framing, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let mut headers = empty_headers();
    if let Ok(Some(res)) = parse_response(data, &mut headers, first & 1 == 1) {
        assert!(res.head_len <= data.len());
        for (framing, version) in [(res.framing, Version::Http11), (Framing::Close, Version::Http10)] {
            let mut out = Vec::new();
            write_response_head(&mut out, &res, framing, first & 2 == 2, version);
            assert!(out.ends_with(b"\r\n\r\n"));
        }
    }
});
