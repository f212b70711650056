//! Runs the in-container driver's own test suite (Python, standard library
//! only) as part of `cargo test`, so one command runs every test.

use std::process::Command;

#[test]
fn python_driver_suite_passes() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "driver"])
        .current_dir(repo)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "driver tests failed:\n{stderr}");
    // unittest's summary line, e.g. "Ran 39 tests in 8.1s".
    let ran = stderr.lines().find_map(|l| {
        l.strip_prefix("Ran ")?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    assert!(ran.unwrap_or(0) > 0, "no driver test ran:\n{stderr}");
}
