//! Colour for the terminal: plain ANSI codes, only when stdout is a
//! terminal and `NO_COLOR` (any non-empty value) is not set.

use crate::wire::api::{ExitInfo, SessionState};
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Color {
    Green,
    Red,
    Yellow,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
        }
    }
}

/// Whether stdout gets colour: a terminal, `NO_COLOR` unset or empty, and
/// not `TERM=dumb`.
pub(super) fn enabled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb && std::io::stdout().is_terminal()
}

/// `text` in `color` when `on`, unchanged otherwise.
pub(super) fn paint(text: &str, color: Option<Color>, on: bool) -> String {
    match color {
        Some(c) if on => format!("\x1b[{}m{text}\x1b[0m", c.code()),
        _ => text.to_string(),
    }
}

/// The colour of a session state: running green, starting yellow, ended
/// green when the function exited with 0 and red otherwise.
pub(super) fn of_state(state: SessionState, exit: Option<&ExitInfo>) -> Option<Color> {
    match state {
        SessionState::Starting | SessionState::Resuming => Some(Color::Yellow),
        SessionState::Running => Some(Color::Green),
        SessionState::Ended => match exit {
            Some(e) if e.reason.is_success() => Some(Color::Green),
            Some(_) => Some(Color::Red),
            None => None,
        },
    }
}

/// How many columns `s` takes on a terminal: characters, not counting
/// ANSI escape sequences (`ESC [ … final`).
pub(super) fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            width += 1;
            continue;
        }
        if chars.next() == Some('[') {
            // Parameters and intermediates, up to the final byte.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::api::ExitReason;

    #[test]
    fn escapes_take_no_width() {
        let s = paint("running", Some(Color::Green), true);
        assert!(s.starts_with("\x1b[32m"), "{s:?}");
        assert_eq!(visible_width(&s), 7);
        assert_eq!(visible_width("plain"), 5);
        assert_eq!(visible_width("é\x1b[1;31mx\x1b[0m"), 2);
        assert_eq!(paint("x", Some(Color::Red), false), "x");
    }

    #[test]
    fn states_have_colours() {
        let ok: ExitInfo = ExitReason::Exited { code: 0 }.into();
        let bad: ExitInfo = ExitReason::Exited { code: 2 }.into();
        assert_eq!(of_state(SessionState::Running, None), Some(Color::Green));
        assert_eq!(of_state(SessionState::Starting, None), Some(Color::Yellow));
        assert_eq!(of_state(SessionState::Ended, Some(&ok)), Some(Color::Green));
        assert_eq!(of_state(SessionState::Ended, Some(&bad)), Some(Color::Red));
    }
}
