//! Every variant of the wire enums against the AsyncAPI document.
//!
//! The samples are listed by exhaustive `match`es, so a new variant does not
//! build until it is named here; and the document's messages are derived
//! from the enums, so a variant without a sample fails at run time too.

use super::*;
use crate::wire::api::{ExitInfo, InputFrame, OutputFrame, Stream};
use std::collections::BTreeSet;

fn close_reasons() -> Vec<CloseReason> {
    let all = vec![
        CloseReason::TakenOver,
        CloseReason::ClosedByUser,
        CloseReason::Finished,
        CloseReason::Protocol {
            message: "input seq gap".into(),
        },
        CloseReason::SlowClient,
        CloseReason::HeartbeatTimeout,
        CloseReason::SessionGone,
        CloseReason::ServerShutdown,
        CloseReason::KeyRevoked,
    ];
    for r in &all {
        // A new variant fails to build here: add a sample above.
        match r {
            CloseReason::TakenOver
            | CloseReason::ClosedByUser
            | CloseReason::Finished
            | CloseReason::Protocol { .. }
            | CloseReason::SlowClient
            | CloseReason::HeartbeatTimeout
            | CloseReason::SessionGone
            | CloseReason::ServerShutdown
            | CloseReason::KeyRevoked => {}
        }
    }
    all
}

fn exit_reasons() -> Vec<ExitReason> {
    let message = || "it broke".to_string();
    let all = vec![
        ExitReason::Exited { code: 3 },
        ExitReason::Signaled { signal: 9 },
        ExitReason::OomKilled,
        ExitReason::Timeout,
        ExitReason::Idle { after: 300 },
        ExitReason::Killed,
        ExitReason::Abandoned,
        ExitReason::OutputCap,
        ExitReason::ProtocolError { message: message() },
        ExitReason::StartFailed { message: message() },
        ExitReason::Lost { message: message() },
        ExitReason::NodeLost { node: "n1".into() },
        ExitReason::Diverged { input: 4 },
    ];
    for r in &all {
        match r {
            ExitReason::Exited { .. }
            | ExitReason::Signaled { .. }
            | ExitReason::OomKilled
            | ExitReason::Timeout
            | ExitReason::Idle { .. }
            | ExitReason::Killed
            | ExitReason::Abandoned
            | ExitReason::OutputCap
            | ExitReason::ProtocolError { .. }
            | ExitReason::StartFailed { .. }
            | ExitReason::Lost { .. }
            | ExitReason::NodeLost { .. }
            | ExitReason::Diverged { .. } => {}
        }
    }
    all
}

/// Every server message: each exit reason inside an `exit`, each close
/// reason inside a `closed`, and the rest once. Named by message.
fn server_samples() -> Vec<(&'static str, ServerMsg)> {
    let mut all = vec![
        ServerMsg::Hello {
            session: "s-1".into(),
            input_next: 1,
            last_seq: 0,
            input_closed: false,
        },
        ServerMsg::InputAck { seq: 2 },
        ServerMsg::Ping,
        ServerMsg::Pong,
        ServerMsg::Deadline {
            at: 1_764_900_000,
            reason: crate::wire::api::DeadlineKind::Timeout,
            in_secs: 30,
        },
        ServerMsg::Deadline {
            at: 1_764_900_000,
            reason: crate::wire::api::DeadlineKind::Idle,
            in_secs: 30,
        },
    ];
    all.extend(exit_reasons().into_iter().map(|r| ServerMsg::Exit {
        seq: 7,
        exit: ExitInfo::from(r),
    }));
    all.extend(
        close_reasons()
            .into_iter()
            .map(|reason| ServerMsg::Closed { reason }),
    );
    all.into_iter()
        .map(|m| {
            let name = match &m {
                ServerMsg::Hello { .. } => "server_hello",
                ServerMsg::Exit { .. } => "server_exit",
                ServerMsg::InputAck { .. } => "server_input_ack",
                ServerMsg::Ping => "server_ping",
                ServerMsg::Pong => "server_pong",
                ServerMsg::Closed { .. } => "server_closed",
                ServerMsg::Deadline { .. } => "server_deadline",
            };
            (name, m)
        })
        .collect()
}

fn client_samples() -> Vec<(&'static str, ClientMsg)> {
    [
        ClientMsg::Eof { seq: 5 },
        ClientMsg::Ack { seq: 12 },
        ClientMsg::Ping,
        ClientMsg::Pong,
        ClientMsg::Detach,
    ]
    .into_iter()
    .map(|m| {
        let name = match &m {
            ClientMsg::Eof { .. } => "client_eof",
            ClientMsg::Ack { .. } => "client_ack",
            ClientMsg::Ping => "client_ping",
            ClientMsg::Pong => "client_pong",
            ClientMsg::Detach => "client_detach",
        };
        (name, m)
    })
    .collect()
}

/// A validator for `schema`, a part of `doc`: its `#/components/...`
/// references resolve against the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::validator_for(&root).expect("a payload schema compiles")
}

/// The JSON messages an operation lists, by name.
fn operation_messages(doc: &Value, op: &str) -> BTreeSet<String> {
    doc["operations"][op]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["$ref"].as_str()?.rsplit('/').next().map(String::from))
        .filter(|n| !matches!(n.as_str(), "server_output" | "client_input"))
        .collect()
}

/// Checks that each sample is valid against its own message in `op` and
/// against no other, and that every JSON message of `op` has a sample.
fn check_direction(doc: &Value, op: &str, samples: Vec<(&'static str, Value)>) {
    let names = operation_messages(doc, op);
    let sampled: BTreeSet<String> = samples.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        names, sampled,
        "{op}: a message without a sample, or the reverse"
    );
    let validators: Vec<(String, jsonschema::Validator)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                validator(doc, &doc["components"]["messages"][n]["payload"]),
            )
        })
        .collect();
    for (name, sample) in samples {
        for (other, v) in &validators {
            let errors: Vec<String> = v.iter_errors(&sample).map(|e| e.to_string()).collect();
            if other == name {
                assert!(errors.is_empty(), "{sample} against {name}: {errors:?}");
            } else {
                assert!(!errors.is_empty(), "{sample} is valid as {other} too");
            }
        }
    }
}

fn to_json<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).expect("wire messages serialize")
}

#[test]
fn every_server_message_variant_is_valid_against_its_message() {
    let samples = server_samples()
        .iter()
        .map(|(n, m)| (*n, to_json(m)))
        .collect();
    check_direction(&document(), "receiveFromSession", samples);
}

#[test]
fn every_client_message_variant_is_valid_against_its_message() {
    let samples = client_samples()
        .iter()
        .map(|(n, m)| (*n, to_json(m)))
        .collect();
    check_direction(&document(), "sendToSession", samples);
}

/// The reasons are component schemas of their own, with one branch per
/// variant, each sample valid.
#[test]
fn every_close_and_exit_reason_is_valid_against_its_component() {
    let doc = document();
    let kinds = |v: &[Value]| -> BTreeSet<String> {
        v.iter()
            .filter_map(|x| x["kind"].as_str().map(String::from))
            .collect()
    };
    let branches = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["properties"]["kind"]["const"].as_str().map(String::from))
            .collect()
    };
    let close: Vec<Value> = close_reasons().iter().map(to_json).collect();
    let exit: Vec<Value> = exit_reasons().iter().map(to_json).collect();
    for (name, samples) in [("CloseReason", close), ("ExitReason", exit)] {
        assert_eq!(kinds(&samples), branches(name), "{name}");
        let v = validator(
            &doc,
            &json!({ "$ref": format!("#/components/schemas/{name}") }),
        );
        for s in &samples {
            assert!(v.is_valid(s), "{s} is not a valid {name}");
        }
        assert!(!v.is_valid(&json!({"kind": "no_such_reason"})), "{name}");
    }
}

/// The validation above can fail: wrong or missing fields are refused.
#[test]
fn malformed_messages_are_refused() {
    let doc = document();
    let payload = |n: &str| validator(&doc, &doc["components"]["messages"][n]["payload"]);
    assert!(!payload("client_ack").is_valid(&json!({"type": "ack"})));
    assert!(!payload("client_ack").is_valid(&json!({"type": "ack", "seq": -1})));
    assert!(!payload("server_hello").is_valid(&json!({"type": "hello", "session": "s"})));
    let bad_exit = json!({"type": "exit", "seq": 1, "exit": {"reason": {"kind": "exited"}, "code": 0, "message": ""}});
    assert!(!payload("server_exit").is_valid(&bad_exit));
}

/// The binary layout the document gives is the one the codec writes.
#[test]
fn binary_layouts_match_the_codec() {
    let doc = document();
    let offset = |msg: &str, field: &str| -> usize {
        doc["components"]["messages"][msg]["x-layout"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["field"] == field)
            .and_then(|f| f["offset"].as_u64())
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(usize::MAX)
    };
    let seq = 0x0102_0304_0506_0708u64;
    let out = OutputFrame {
        seq,
        stream: Stream::Stderr,
        end: true,
        bytes: bytes::Bytes::from_static(b"hi"),
    }
    .encode();
    assert_eq!(out[offset("server_output", "stream")], 3);
    assert_eq!(out[offset("server_output", "flags")] & 1, 1);
    let at = offset("server_output", "seq");
    assert_eq!(out[at..at + 8], seq.to_be_bytes());
    assert_eq!(&out[offset("server_output", "bytes")..], b"hi");
    let input = InputFrame {
        seq,
        bytes: bytes::Bytes::from_static(b"yo"),
    }
    .encode();
    assert_eq!(input[offset("client_input", "kind")], 1);
    let at = offset("client_input", "seq");
    assert_eq!(input[at..at + 8], seq.to_be_bytes());
    assert_eq!(&input[offset("client_input", "bytes")..], b"yo");
}

#[test]
fn every_reference_resolves_and_operations_use_the_channels_messages() {
    let doc = document();
    let mut all = Vec::new();
    crate::controller::api::openapi::refs(&doc, &mut all);
    assert!(all.iter().any(|r| r == "#/components/schemas/ExitInfo"));
    for r in &all {
        let found = r.strip_prefix('#').and_then(|p| doc.pointer(p));
        assert!(found.is_some(), "dangling $ref {r}");
    }
    // AsyncAPI 3: an operation's messages are its channel's.
    for op in ["sendToSession", "receiveFromSession"] {
        for m in doc["operations"][op]["messages"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let r = m["$ref"].as_str().unwrap_or_default();
            assert!(r.starts_with("#/channels/attach/messages/"), "{op}: {r}");
        }
    }
}
