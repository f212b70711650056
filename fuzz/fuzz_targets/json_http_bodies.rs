//! JSON bodies of the HTTP API. The server parses `SubmitFunction` and
//! `CreateSession` from (untrusted) clients; the client parses the answers
//! (`FunctionInfo`, `SessionInfo`, `SessionCreated`, `ErrorBody`, and lists
//! of infos). Checked: no panic, and what parses serializes again.
#![no_main]

use bento::wire::api::{
    CreateSession, ErrorBody, FunctionInfo, SessionCreated, SessionInfo, SubmitFunction,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn check<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&v).expect("a parsed body serializes");
        // Re-parse what we wrote; it must still be accepted.
        serde_json::from_slice::<T>(&json).expect("own output parses");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<SubmitFunction>(data);
    check::<CreateSession>(data);
    check::<FunctionInfo>(data);
    check::<Vec<FunctionInfo>>(data);
    check::<SessionInfo>(data);
    check::<Vec<SessionInfo>>(data);
    check::<SessionCreated>(data);
    check::<ErrorBody>(data);
});
