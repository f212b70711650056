//! `bento::wire::api::InputFrame::decode`: binary WebSocket messages the
//! server gets from (untrusted) clients. Checked: no panic; a decoded frame
//! encodes back to exactly the same bytes and decodes again to itself.
#![no_main]

use bento::wire::api::{InputFrame, INPUT_HEADER_LEN};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = InputFrame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(frame.bytes.len(), data.len() - INPUT_HEADER_LEN);
    let encoded = frame.encode();
    assert_eq!(&encoded[..], data);
    assert_eq!(InputFrame::decode(encoded), Ok(frame));
});
