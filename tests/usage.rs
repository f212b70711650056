//! Resource usage, measured by the engine, against the real Docker engine:
//! a function that burns about 1 s of CPU and holds about 100 MiB is
//! measured within a tolerance, live in `inspect`, finally in the exit
//! message (`bento run --usage`), in the history and in `/metrics`.

mod kit;

use std::time::Duration;

use bento::wire::api::{ExitReason, Usage};
use kit::client::{receive, try_attach, wait_reaped};
use kit::{err, expect_code, TestServer};

/// About 1 s of CPU (process time, so a CPU quota does not stretch it),
/// then 100 MiB touched page by page, held while a message says so and
/// for 2 s more: long enough for samples at the 1 s period to see it.
const HUNGRY: &str = r#"
import time
def main():
    start = time.process_time()
    n = 0
    while time.process_time() - start < 1.0:
        n += 1
    buf = bytearray(100 * 1024 * 1024)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    send("holding")
    time.sleep(2.0)
    send(str(len(buf)))
"#;

const MIB: u64 = 1024 * 1024;
/// The image's default memory limit (config/images/python.yaml).
const LIMIT: u64 = 256 * MIB;

/// The tolerance the docs state: CPU within 0.7..2.0 s for 1 s burnt (the
/// interpreter's start and the page touching add some; a sample period
/// may miss the last moments), peak memory at least the 100 MiB held
/// (less 10% for what the kernel may not count yet) and below the limit.
fn check(u: &Usage, what: &str) {
    let cpu = u.cpu_secs();
    assert!((0.7..2.0).contains(&cpu), "{what}: cpu {cpu}s: {u:?}");
    assert!(
        u.peak_memory_bytes >= 90 * MIB && u.peak_memory_bytes < LIMIT,
        "{what}: peak memory {} MiB: {u:?}",
        u.peak_memory_bytes / MIB
    );
    assert!(u.peak_pids >= 1, "{what}: pids: {u:?}");
    assert!(u.samples >= 1, "{what}: {u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hungry_functions_usage_is_measured_live_at_exit_and_kept() {
    let s = TestServer::start().await;
    let f = s.submit(HUNGRY).await;
    let (token, _) = s.session(&f, &[]).await;

    // Live: once the 100 MiB are held, inspect shows them (samples come
    // every second; the wait is for that event, bounded).
    let info = s
        .wait_session(&token, "usage with the memory held", |i| {
            i.pending_messages >= 1
                && i.usage
                    .as_ref()
                    .is_some_and(|u| u.peak_memory_bytes >= 90 * MIB)
        })
        .await;
    let live = info.usage.unwrap_or_default();
    assert!(live.cpu_secs() >= 0.7, "live cpu: {live:?}");
    let o = s.cli(&["inspect", &token], b"");
    expect_code(&o, 0, "inspect");
    let text = kit::out(&o);
    for key in ["cpu", "mem peak", "pids peak", "wall"] {
        assert!(text.contains(key), "inspect shows {key}: {text}");
    }

    // Final: in the exit message.
    let mut att = try_attach(&s.client, &token, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = receive(&mut att, |_| false).await;
    let exit = got
        .exit
        .clone()
        .unwrap_or_else(|| panic!("no exit: {got:?}"));
    assert_eq!(exit.reason, ExitReason::Exited { code: 0 });
    let usage = exit
        .usage
        .clone()
        .unwrap_or_else(|| panic!("no usage in {exit:?}"));
    eprintln!("measured: {usage:?}");
    check(&usage, "exit message");
    assert!(
        (2_500..20_000).contains(&usage.wall_ms),
        "wall covers the burn and the 2 s hold: {usage:?}"
    );
    drop(att);

    // Kept: the history has the same figures once the session is reaped.
    wait_reaped(&s.client, &token, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = s
        .client
        .history_record(&token)
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    assert_eq!(record.usage.as_ref(), Some(&usage));
    assert_eq!(record.exit.as_ref(), Some(&exit));

    // And in /metrics, per image.
    let metrics = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap_or_else(|e| panic!("metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    for name in [
        "bento_session_cpu_seconds_count{image=\"python\"}",
        "bento_session_peak_memory_bytes_count{image=\"python\"}",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
}

/// `bento run --usage`: the figures on stderr after the exit, and only
/// there (stdout is the function's output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_usage_prints_the_figures_after_the_exit() {
    let s = TestServer::start().await;
    let f = s.submit(HUNGRY).await;
    let o = s.cli(&["run", &f, "--usage"], b"");
    expect_code(&o, 0, "run --usage");
    assert_eq!(kit::out(&o), "holding\n104857600\n");
    let stderr = err(&o);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("bento: usage: "))
        .unwrap_or_else(|| panic!("no usage line: {stderr}"));
    // "bento: usage: cpu 1.020s user 0.050s system, memory peak 110.3 MiB, ..."
    let secs: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('s').and_then(|n| n.parse().ok()))
        .collect();
    let cpu = secs.first().copied().unwrap_or(0.0) + secs.get(1).copied().unwrap_or(0.0);
    assert!((0.7..2.0).contains(&cpu), "cpu {cpu}: {line}");
    let mib: f64 = line
        .split("memory peak ")
        .nth(1)
        .and_then(|r| r.split(" MiB").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!((90.0..256.0).contains(&mib), "peak {mib} MiB: {line}");
    // Without the flag, nothing is said.
    let quiet = s.cli(&["run", &f], b"");
    expect_code(&quiet, 0, "run");
    assert!(!err(&quiet).contains("bento: usage"), "{}", err(&quiet));
}
