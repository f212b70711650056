//! The driver protocol's messages, both directions, and the constants the
//! Python driver must agree on.

use bytes::Bytes;

use super::*;
use crate::wire::api::Stream;

fn decode_one(frames: &[Bytes]) -> Frame {
    let mut d = Decoder::new();
    for f in frames {
        d.feed(f.clone());
    }
    let frame = d
        .next_frame()
        .expect("a good frame")
        .expect("a whole frame");
    d.finish().expect("nothing left over");
    frame
}

#[test]
fn every_kind_round_trips_through_its_byte() {
    for k in Kind::ALL {
        assert_eq!(Kind::from_u8(k as u8), Some(k));
    }
    assert_eq!(Kind::from_u8(0), None);
    assert_eq!(Kind::from_u8(7), None);
    assert_eq!(Kind::from_u8(21), None);
}

#[test]
fn frames_from_the_driver_become_typed_messages() {
    let data = decode_one(&[encode(Kind::Data, true, b"hi")]);
    assert_eq!(
        FromDriver::try_from(data),
        Ok(FromDriver::Output {
            stream: Stream::Data,
            end: true,
            payload: Bytes::from_static(b"hi")
        })
    );
    let credit = decode_one(&[encode(Kind::Credit, false, &7u64.to_be_bytes())]);
    assert_eq!(FromDriver::try_from(credit), Ok(FromDriver::Credit(7)));
    let short = decode_one(&[encode(Kind::Credit, false, &[1, 2, 3])]);
    assert_eq!(
        FromDriver::try_from(short),
        Err(FrameError::BadPayload(Kind::Credit, 3))
    );
    let ready = decode_one(&[encode(Kind::Ready, false, b"")]);
    assert_eq!(FromDriver::try_from(ready), Ok(FromDriver::Ready));
}

#[test]
fn the_decoder_refuses_kinds_that_only_go_to_the_driver() {
    let mut d = Decoder::new();
    d.feed(encode(Kind::Start, true, b"{}"));
    assert_eq!(
        d.next_frame(),
        Err(FrameError::UnknownKind(Kind::Start as u8))
    );
}

/// Reads back what the controller writes, as the driver would.
fn read_to_driver(frames: &[Bytes]) -> Vec<(Kind, bool, Vec<u8>)> {
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let mut out = vec![];
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let head: [u8; HEADER_LEN] = rest[..HEADER_LEN].try_into().expect("a header");
        let h = Header::parse(&head).expect("a good header");
        out.push((h.kind, h.end, rest[HEADER_LEN..HEADER_LEN + h.len].to_vec()));
        rest = &rest[HEADER_LEN + h.len..];
    }
    out
}

#[test]
fn messages_to_the_driver_encode_as_the_driver_reads_them() {
    let args = vec!["a".to_string()];
    let start = ToDriver::Start(Start::new("print(1)", &args, "f.py"))
        .encode()
        .expect("a small START");
    let frames = read_to_driver(&start);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0, frames[0].1), (Kind::Start, true));
    let json: serde_json::Value = serde_json::from_slice(&frames[0].2).expect("JSON");
    assert_eq!(json["code"], "print(1)");
    assert_eq!(json["args"][0], "a");
    assert_eq!(json["filename"], "f.py");
    assert_eq!(json["window"], DRIVER_WINDOW);
    assert_eq!(json["max_inputs"], MAX_INPUTS_IN_FLIGHT);
    assert_eq!(json["max_input_bytes"], MAX_INPUT_BYTES_IN_FLIGHT);

    let check = ToDriver::Check(CheckStart::new("x = 1", "f.py"))
        .encode()
        .expect("a small check");
    let json: serde_json::Value =
        serde_json::from_slice(&read_to_driver(&check)[0].2).expect("JSON");
    assert_eq!(json["check"]["code"], "x = 1");
    assert!(json.get("code").is_none(), "an old driver must not run it");

    let ack = read_to_driver(&ToDriver::Ack(42).encode().expect("ack"));
    assert_eq!(ack, vec![(Kind::Ack, false, 42u64.to_be_bytes().to_vec())]);
    let eof = read_to_driver(&ToDriver::Eof.encode().expect("eof"));
    assert_eq!(eof, vec![(Kind::Eof, true, vec![])]);
    let nonce = [9u8; NONCE_LEN];
    let resume = read_to_driver(
        &ToDriver::Resume { offset: 5, nonce }
            .encode()
            .expect("resume"),
    );
    let mut payload = 5u64.to_be_bytes().to_vec();
    payload.extend_from_slice(&nonce);
    assert_eq!(resume, vec![(Kind::Resume, true, payload)]);
}

#[test]
fn long_input_is_chunked_and_too_large_a_start_refused() {
    let big = vec![7u8; MAX_PAYLOAD * 2 + 5];
    let frames = read_to_driver(&ToDriver::Input(&big).encode().expect("input"));
    assert_eq!(frames.len(), 3);
    assert!(!frames[0].1 && !frames[1].1 && frames[2].1);
    assert_eq!(frames.iter().map(|f| f.2.len()).sum::<usize>(), big.len());

    let code = "x".repeat(MAX_START);
    let refused = ToDriver::Start(Start::new(&code, &[], "f.py")).encode();
    assert!(matches!(refused, Err(EncodeError::StartTooLarge(n)) if n > MAX_START));
}

/// The Python driver's constants, as `python3` imports them.
fn python_constants() -> Option<serde_json::Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/driver");
    let script = format!(
        "import json, sys; sys.path.insert(0, {dir:?}); import _bento_wire as w; \
         print(json.dumps({{k: v for k, v in vars(w).items() \
         if k.isupper() and isinstance(v, int)}}))"
    );
    let out = std::process::Command::new("python3")
        .args(["-I", "-c", &script])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "python3 cannot import the driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the constants as JSON"))
}

#[test]
fn the_python_driver_agrees_on_every_constant() {
    let Some(py) = python_constants() else {
        panic!("python3 is needed to check the driver's constants");
    };
    let get = |name: &str| {
        py.get(name)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("the Python driver has no {name}"))
    };
    for k in Kind::ALL {
        assert_eq!(get(&format!("KIND_{}", k.name())), k as u64, "KIND_{k}");
    }
    assert_eq!(get("FLAG_END"), u64::from(FLAG_END));
    assert_eq!(get("HEADER_SIZE"), HEADER_LEN as u64);
    assert_eq!(get("MAX_PAYLOAD"), MAX_PAYLOAD as u64);
    assert_eq!(get("NONCE_SIZE"), NONCE_LEN as u64);
    assert_eq!(get("DEFAULT_WINDOW"), DRIVER_WINDOW);
    assert_eq!(get("DEFAULT_MAX_INPUTS"), MAX_INPUTS_IN_FLIGHT);
    assert_eq!(get("DEFAULT_MAX_INPUT_BYTES"), MAX_INPUT_BYTES_IN_FLIGHT);
    // And no kind the Rust side does not know.
    let kinds = py
        .as_object()
        .map(|o| o.keys().filter(|k| k.starts_with("KIND_")).count())
        .unwrap_or(0);
    assert_eq!(
        kinds,
        Kind::ALL.len(),
        "the Python driver's KIND_ constants"
    );
}
