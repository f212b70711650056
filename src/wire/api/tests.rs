use super::*;
use bytes::{Bytes, BytesMut};

#[test]
fn output_frame_round_trips() {
    let f = OutputFrame {
        seq: 42,
        stream: Stream::Data,
        end: true,
        bytes: Bytes::from_static(b"hello"),
    };
    assert_eq!(OutputFrame::decode(f.encode()), Ok(f));
}

#[test]
fn encoding_into_a_buffer_reuses_its_memory_once_the_last_message_is_gone() {
    let frame = |seq, n| OutputFrame {
        seq,
        stream: Stream::Data,
        end: true,
        bytes: Bytes::from(vec![7u8; n]),
    };
    let mut buf = BytesMut::new();
    let first = frame(1, 65536).encode_into(&mut buf);
    let at = first.as_ptr();
    assert_eq!(OutputFrame::decode(first), Ok(frame(1, 65536)));
    let second = frame(2, 1000).encode_into(&mut buf);
    assert_eq!(second.as_ptr(), at, "the same memory, not a new allocation");
    // While a message is still held, the next one goes elsewhere.
    let third = frame(3, 65536).encode_into(&mut buf);
    assert_ne!(third.as_ptr(), second.as_ptr());
    assert_eq!(OutputFrame::decode(second), Ok(frame(2, 1000)));
    assert_eq!(OutputFrame::decode(third), Ok(frame(3, 65536)));
}

#[test]
fn short_or_unknown_frames_are_rejected() {
    assert!(OutputFrame::decode(Bytes::from_static(b"\x01\x00")).is_err());
    assert!(OutputFrame::decode(Bytes::from_static(b"\x09\x00\0\0\0\0\0\0\0\x01")).is_err());
    assert!(InputFrame::decode(Bytes::from_static(b"\x02\0\0\0\0\0\0\0\x01")).is_err());
}

#[test]
fn control_messages_are_tagged_json() {
    let m = ClientMsg::Ack { seq: 7 };
    assert_eq!(
        serde_json::to_string(&m).ok().as_deref(),
        Some(r#"{"type":"ack","seq":7}"#)
    );
    let e = ServerMsg::Exit {
        seq: 3,
        exit: ExitReason::Exited { code: 2 }.into(),
    };
    let s = serde_json::to_string(&e).unwrap_or_default();
    assert_eq!(serde_json::from_str::<ServerMsg>(&s).ok(), Some(e));
}

#[test]
fn exit_reasons_read_as_words() {
    assert_eq!(
        ExitReason::Exited { code: 0 }.to_string(),
        "exited with code 0"
    );
    assert_eq!(ExitReason::Timeout.cli_exit_code(), 124);
    assert!(!ExitReason::Killed.is_success());
}
