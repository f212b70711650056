//! Function sources more than one test (or the bench) runs.

/// Answers each input with the running total of the inputs so far: its
/// output depends on all its input, so a fork's answer shows whether its
/// replay was whole.
pub const ACCUMULATOR: &str = r#"
def main():
    total = 0
    while True:
        m = recv()
        if m is None:
            break
        total += int(m)
        send(str(total))
"#;
