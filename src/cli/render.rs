//! What a function wrote, made safe for a terminal: `bento run`, `attach`
//! and `logs` show control characters visibly instead of passing them on.
//!
//! A function's output is hostile input (see `docs/security.md`). Passed
//! through, `ESC [ … m` recolours the user's terminal, `ESC ] 0 ; … BEL`
//! retitles its window, `ESC ] 52` can write the clipboard, and other
//! sequences move the cursor to forge what was printed before. So, unless
//! `--raw` asks for the bytes as they are, each control character is
//! rendered as text:
//!
//! - C0 controls and DEL as `\x1b`, `\x07`, `\x7f`, …, except newline, tab
//!   and carriage return, which pass (a lone `\r` is how progress bars
//!   redraw their line; it can only return to the start of the current line);
//! - C1 controls (U+0080 to U+009F, which some terminals obey as `ESC @`
//!   to `ESC _`) as `\u{9b}`;
//! - bytes that are not UTF-8 as `\xff`: nothing is lost, and a terminal
//!   that is not in UTF-8 mode cannot read a lone `0x9b` as a CSI.
//!
//! All other text, UTF-8 included, is left as it is. This applies whether or
//! not stdout is a terminal: output piped to a file or to `less -R` is
//! interpreted later by whatever shows it.

use crate::wire::api::{OutputFrame, Stream};
use bytes::Bytes;

/// Per-stream state: a UTF-8 sequence may be split across chunks.
#[derive(Default)]
pub(super) struct Render {
    /// The start of a UTF-8 sequence the stream's last chunk ended in (at
    /// most 3 bytes), indexed by [`slot`].
    carry: [Vec<u8>; 3],
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Data => 0,
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    }
}

/// Bytes that need no rendering when the whole chunk is made of them: the
/// common case, which keeps the chunk's bytes as they are, without a copy.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\t' || b == b'\r'
}

impl Render {
    /// The frame's bytes as the terminal should get them. An incomplete
    /// UTF-8 sequence at the end of a chunk is held back until the next
    /// chunk of its stream (or the end of a data message, or [`Render::finish`]).
    pub(super) fn frame(&mut self, f: &OutputFrame) -> Bytes {
        let carry = &mut self.carry[slot(f.stream)];
        // A fold without an early exit: the compiler vectorises it.
        let all_plain = f.bytes.iter().fold(true, |ok, &b| ok & plain(b));
        if carry.is_empty() && all_plain {
            return f.bytes.clone();
        }
        let mut input = std::mem::take(carry);
        input.extend_from_slice(&f.bytes);
        let mut out = Vec::with_capacity(input.len() + 16);
        // The end of a data message is the end of its text; printed output
        // goes on in the next chunk.
        let ends = f.stream == Stream::Data && f.end;
        render(&input, &mut out, carry, ends);
        Bytes::from(out)
    }

    /// What each stream still holds back, rendered: for when no more
    /// output will come, or everything so far must be out. Stdout's and
    /// data's go to stdout, stderr's to stderr.
    pub(super) fn finish(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        for (i, carry) in self.carry.iter_mut().enumerate() {
            let target = if i == slot(Stream::Stderr) {
                &mut err
            } else {
                &mut out
            };
            for &b in carry.iter() {
                escape_byte(b, target);
            }
            carry.clear();
        }
        (out, err)
    }
}

/// Renders `input` into `out`. Unless `ends`, an incomplete UTF-8 sequence
/// at its end goes to `carry` instead.
fn render(mut input: &[u8], out: &mut Vec<u8>, carry: &mut Vec<u8>, ends: bool) {
    loop {
        match std::str::from_utf8(input) {
            Ok(text) => return render_text(text, out),
            Err(e) => {
                let (valid, rest) = input.split_at(e.valid_up_to());
                // Valid by the error's own account; never empty-handed.
                render_text(std::str::from_utf8(valid).unwrap_or_default(), out);
                match e.error_len() {
                    Some(n) => {
                        rest[..n].iter().for_each(|&b| escape_byte(b, out));
                        input = &rest[n..];
                    }
                    // The input ends inside a sequence that may yet be valid.
                    None if !ends => {
                        carry.extend_from_slice(rest);
                        return;
                    }
                    None => {
                        rest.iter().for_each(|&b| escape_byte(b, out));
                        return;
                    }
                }
            }
        }
    }
}

fn render_text(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match c {
            '\n' | '\t' | '\r' => out.push(c as u8),
            // C0 and DEL: one byte each.
            '\0'..='\x1f' | '\x7f' => escape_byte(c as u8, out),
            // C1: two bytes in UTF-8; shown as the code point, so that it
            // differs from a byte that is not UTF-8.
            '\u{80}'..='\u{9f}' => {
                out.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes())
            }
            _ => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn escape_byte(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xf)],
    ]);
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
