//! `ClientMsg`: JSON text messages the server gets from (untrusted) clients
//! on the attach socket. Checked: no panic; what parses serializes and
//! parses back to the same value.
#![no_main]

use bento::wire::api::ClientMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<ClientMsg>(data) else {
        return;
    };
    let json = serde_json::to_vec(&msg).expect("a ClientMsg serializes");
    let back: ClientMsg = serde_json::from_slice(&json).expect("own output parses");
    assert_eq!(back, msg);
});
