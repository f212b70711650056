//! A build's output as lines: the engine sends it in pieces that need not
//! end at a line's end (the classic builder sends a RUN step's stderr in
//! fragments, each wrapped in colour codes), so a line such as apt's
//! `E: Unable to locate package x` can arrive as `E` and `: Unable ...`.

use std::collections::VecDeque;

use super::failed_package;

/// Lines of build output kept to explain a failure.
pub const OUTPUT_TAIL: usize = 30;
/// The longest line kept whole; a longer one is cut there (the buffer of a
/// line still being received is bounded by it too).
const MAX_LINE: usize = 8 << 10;

/// The output so far: the last [`OUTPUT_TAIL`] lines, the line being
/// received, and the first package apt or pip said it could not install
/// (the line saying so may have scrolled out of the tail by the time the
/// step fails).
#[derive(Default)]
pub struct BuildOutput {
    pending: String,
    pub tail: VecDeque<String>,
    pub package: Option<String>,
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Up to and including the sequence's final letter.
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl BuildOutput {
    /// Takes a piece of output; `line` gets each line it completes.
    pub fn push(&mut self, text: &str, mut line: impl FnMut(&str)) {
        for c in strip_ansi(text).chars() {
            if c == '\n' || c == '\r' || self.pending.len() >= MAX_LINE {
                self.end_line(&mut line);
                if c == '\n' || c == '\r' {
                    continue;
                }
            }
            self.pending.push(c);
        }
    }

    /// Ends the line being received, if any (at the end of the output).
    pub fn flush(&mut self, mut line: impl FnMut(&str)) {
        self.end_line(&mut line);
    }

    fn end_line(&mut self, line: &mut impl FnMut(&str)) {
        let text = std::mem::take(&mut self.pending);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if self.tail.len() == OUTPUT_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
        if self.package.is_none() {
            self.package = failed_package(text);
        }
        line(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_and_colours_make_whole_lines() {
        let mut o = BuildOutput::default();
        let mut lines = Vec::new();
        for piece in [
            "Step 6/9 : RUN x\n",
            "\u{1b}[91mE\u{1b}[0m",
            "\u{1b}[91m: Unable to locate package nosuch\n\u{1b}[0m",
            "partial",
        ] {
            o.push(piece, |l| lines.push(l.to_string()));
        }
        o.flush(|l| lines.push(l.to_string()));
        assert_eq!(
            lines,
            [
                "Step 6/9 : RUN x",
                "E: Unable to locate package nosuch",
                "partial"
            ]
        );
        assert_eq!(o.package.as_deref(), Some("nosuch"));
        assert_eq!(o.tail.len(), 3);
    }

    #[test]
    fn tail_and_lines_are_bounded() {
        let mut o = BuildOutput::default();
        let mut n = 0;
        o.push(&"x".repeat(3 * MAX_LINE), |_| n += 1);
        for i in 0..100 {
            o.push(&format!("line {i}\n"), |_| n += 1);
        }
        assert_eq!(n, 103);
        assert_eq!(o.tail.len(), OUTPUT_TAIL);
        assert_eq!(o.tail.back().map(String::as_str), Some("line 99"));
    }
}
