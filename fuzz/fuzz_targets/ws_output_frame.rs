//! `bento::wire::api::OutputFrame::decode`: binary WebSocket messages the
//! client gets from the server. Checked: no panic; a decoded frame encodes
//! back to the same bytes except for unknown flag bits (only `end` is kept),
//! and decodes again to itself.
#![no_main]

use bento::wire::api::{OutputFrame, OUTPUT_HEADER_LEN};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = OutputFrame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(data.len() >= OUTPUT_HEADER_LEN);
    assert_eq!(frame.bytes.len(), data.len() - OUTPUT_HEADER_LEN);
    let encoded = frame.encode();
    assert_eq!(encoded.len(), data.len());
    assert_eq!(encoded[0], data[0]);
    assert_eq!(encoded[1], data[1] & 1);
    assert_eq!(encoded[2..], data[2..]);
    assert_eq!(OutputFrame::decode(encoded), Ok(frame));
});
