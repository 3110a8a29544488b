//! The chunked decoder, fed the same bytes whole and cut in two at a place
//! the first byte picks: both must agree on the data, the bytes used, and
//! whether the input is an error.
#![no_main]

use hiku::http::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), String> {
    let mut decoder = ChunkedDecoder::default();
    let (mut data, mut used) = (Vec::new(), 0);
    for piece in pieces {
        if decoder.is_done() {
            break;
        }
        used += decoder.feed(piece, |d| data.extend_from_slice(d)).map_err(|e| e.to_string())?;
    }
    Ok((data, used, decoder.is_done()))
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, input)) = input.split_first() else { return };
    let at = usize::from(cut).min(input.len());
    let whole = decode(&[input]);
    let split = decode(&[&input[..at], &input[at..]]);
    match (whole, split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} but split at {at} {b:?}"),
    }
});
