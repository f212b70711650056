//! `ServerMsg`: JSON text messages the client gets from the server on the
//! attach socket (including `CloseReason` and `ExitInfo`). Checked: no panic;
//! what parses serializes and parses back to the same value; `Display` of
//! the reasons does not panic.
#![no_main]

use bento::wire::api::ServerMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<ServerMsg>(data) else {
        return;
    };
    match &msg {
        ServerMsg::Exit { exit, .. } => {
            let _ = exit.reason.to_string();
            let _ = exit.reason.cli_exit_code();
        }
        ServerMsg::Closed { reason } => {
            let _ = reason.to_string();
        }
        _ => {}
    }
    let json = serde_json::to_vec(&msg).expect("a ServerMsg serializes");
    let back: ServerMsg = serde_json::from_slice(&json).expect("own output parses");
    assert_eq!(back, msg);
});
