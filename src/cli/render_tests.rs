//! The terminal renderer: control characters shown, text left alone.

use super::*;

fn frame(stream: Stream, end: bool, bytes: &[u8]) -> OutputFrame {
    OutputFrame {
        seq: 1,
        stream,
        end,
        bytes: Bytes::copy_from_slice(bytes),
    }
}

/// Renders one whole data message.
fn once(bytes: &[u8]) -> String {
    let out = Render::default().frame(&frame(Stream::Data, true, bytes));
    String::from_utf8(out.to_vec()).unwrap_or_else(|e| panic!("not UTF-8: {e}"))
}

#[test]
fn escape_sequences_are_shown_not_obeyed() {
    assert_eq!(
        once(b"\x1b[31mred\x1b]0;title\x07"),
        r"\x1b[31mred\x1b]0;title\x07"
    );
    assert_eq!(once(b"a\x00b\x08c\x7f"), r"a\x00b\x08c\x7f");
    // OSC 52 (clipboard) and a C1 CSI, as UTF-8.
    assert_eq!(once(b"\x1b]52;c;aGk=\x07"), r"\x1b]52;c;aGk=\x07");
    assert_eq!(once("\u{9b}2J".as_bytes()), r"\u{9b}2J");
    for out in [once(b"\x1b\x07\x9b"), once("\u{9b}\u{85}".as_bytes())] {
        assert!(!out.bytes().any(|b| b < 0x20 || (0x7f..0xa0).contains(&b)));
    }
}

#[test]
fn text_newlines_tabs_and_carriage_returns_are_left_alone() {
    let text = "plain ascii\n\tindented, 50%\r75%\r\nünïcödé 漢字 🦀 \\x1b\n";
    assert_eq!(once(text.as_bytes()), text);
    // The common case is not copied.
    let f = frame(Stream::Stdout, true, b"hello\n");
    let out = Render::default().frame(&f);
    assert_eq!(out.as_ptr(), f.bytes.as_ptr());
}

#[test]
fn bytes_that_are_not_utf8_are_shown_not_lost() {
    assert_eq!(once(b"a\xffb\xc3"), r"a\xffb\xc3");
    assert_eq!(once(b"\xe6\xbc"), r"\xe6\xbc");
    assert_eq!(once(b"\xc0\xaf ok"), r"\xc0\xaf ok");
}

#[test]
fn a_character_split_across_chunks_stays_whole() {
    let crab = "🦀".as_bytes();
    let mut r = Render::default();
    let first = r.frame(&frame(Stream::Stdout, true, &[b'a', crab[0], crab[1]]));
    // Stderr in between has a state of its own.
    let other = r.frame(&frame(Stream::Stderr, true, b"\x1b"));
    let second = r.frame(&frame(Stream::Stdout, true, &[crab[2], crab[3], b'b']));
    assert_eq!(&first[..], b"a");
    assert_eq!(&other[..], br"\x1b");
    assert_eq!(&second[..], "🦀b".as_bytes());

    // A data message ends its text: what is left of a sequence is shown.
    let mut r = Render::default();
    let out = r.frame(&frame(Stream::Data, false, &crab[..2]));
    assert!(out.is_empty());
    let out = r.frame(&frame(Stream::Data, true, b""));
    assert_eq!(&out[..], br"\xf0\x9f");

    // So is what a stream holds back when the output ends.
    let mut r = Render::default();
    r.frame(&frame(Stream::Stdout, true, &crab[..3]));
    r.frame(&frame(Stream::Stderr, true, &crab[..1]));
    let (out, err) = r.finish();
    assert_eq!(out, br"\xf0\x9f\xa6");
    assert_eq!(err, br"\xf0");
    assert_eq!(r.finish(), (vec![], vec![]));
}

#[test]
fn any_bytes_render_to_text_without_controls() {
    // Every byte value, in every position of a small window, split at
    // every point: the result is UTF-8 with no control but \n, \t and \r.
    let all: Vec<u8> = (0..=255u8).collect();
    for split in [0, 1, 2, 3, 127, 128, 200] {
        let mut r = Render::default();
        let mut shown = r
            .frame(&frame(Stream::Stdout, true, &all[..split]))
            .to_vec();
        shown.extend_from_slice(&r.frame(&frame(Stream::Stdout, true, &all[split..])));
        shown.extend_from_slice(&r.finish().0);
        let text = String::from_utf8(shown).unwrap_or_else(|e| panic!("{split}: {e}"));
        let bad = text
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'));
        assert_eq!(bad, None, "split at {split}: {text:?}");
    }
}
