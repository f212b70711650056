//! Resource usage (docs/usage.md) and the environment (docs/env.md) on the
//! Swarm engine: usage is read from the engine of the node that runs the
//! session (its stats endpoint, the controller being off that host), and
//! the environment reaches the function in START wherever it is placed.

use super::*;
use bento::wire::api::{CreateSession, LimitsRequest};

/// Reports a variable, burns about a second of CPU, then holds 100 MiB
/// long enough for a sample to see it.
const HUNGRY: &str = r#"
import os, time
def main():
    send(os.environ.get("PLACE", "-"))
    start = time.process_time()
    while time.process_time() - start < 1.0:
        pass
    buf = bytearray(100 * 1024 * 1024)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    time.sleep(2.0)
    send(str(len(buf)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_comes_from_the_nodes_engine_and_env_reaches_the_function() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(HUNGRY).await;
    let body = CreateSession {
        function: f,
        env: [("PLACE".to_string(), "swarm".to_string())].into(),
        // The cluster's image defaults (64 MiB, 0.05 CPU) keep 30 sessions
        // on a laptop; this one needs room for 100 MiB and a second of CPU.
        limits: LimitsRequest {
            memory: Some(256 << 20),
            cpus: Some(1.0),
            ..LimitsRequest::default()
        },
        ..CreateSession::default()
    };
    let created = match ctl.client.create_session(&body).await {
        Ok(c) => c,
        Err(e) => panic!("create session: {e}\n{}", ctl.log_tail()),
    };
    let node = ctl.node_of(&created.id).await;
    let mut att = ctl.attach(&created.token, 0).await;
    let r = receive(&mut att, |r| r.exit.is_some()).await;
    assert_eq!(
        r.data_strings(),
        ["swarm".to_string(), (100 * 1024 * 1024).to_string()],
        "{:?}",
        r.exit
    );
    let exit = r.exit.unwrap_or_else(|| panic!("no exit"));
    assert_eq!(exit.code, 0, "{exit:?}");
    let usage = exit
        .usage
        .clone()
        .unwrap_or_else(|| panic!("no usage in the exit message: {exit:?}"));
    say(&format!("usage on {node}: {usage:?}"));
    assert!(usage.samples > 0, "{usage:?}");
    let cpu = usage.cpu_secs();
    assert!((0.5..4.0).contains(&cpu), "cpu {cpu} s: {usage:?}");
    assert!(
        usage.peak_memory_bytes >= 90 << 20,
        "peak {} B: {usage:?}",
        usage.peak_memory_bytes
    );
    assert!(usage.wall_ms >= 2000, "{usage:?}");
}
