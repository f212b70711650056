//! Trust boundaries, against a real controller and real containers: values
//! a client sends that the engine would misread are refused where they
//! enter, and what the engine says when it fails stays in the controller's
//! log.

mod kit;

use kit::{err, receive, TestServer};
use serde_json::{json, Value};

/// POSTs a session request; returns the status and the body as JSON.
async fn post_session(s: &TestServer, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sessions", s.url))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /v1/sessions: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading the body: {e}"));
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, v)
}

/// The CPU share the function's own cgroup enforces, as it sees it
/// (cgroup v2's cpu.max, or v1's quota and period).
const CPU_QUOTA: &str = r#"
def main():
    try:
        quota, period = open('/sys/fs/cgroup/cpu.max').read().split()
    except OSError:
        quota = open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read().strip()
        period = open('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read().strip()
    return 'unlimited' if quota in ('max', '-1') else f'{int(quota) / int(period):.4f}'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpus_below_the_engines_minimum_are_refused_and_the_minimum_is_enforced() {
    let s = TestServer::start().await;
    let f = s.submit(CPU_QUOTA).await;
    for tiny in [json!(1e-300), json!(0.001), json!(0.0099)] {
        let (status, body) =
            post_session(&s, json!({"function": f, "limits": {"cpus": tiny}})).await;
        let message = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "cpus {tiny}: {body}");
        assert!(
            message.contains("cpus") && message.contains("0.01"),
            "cpus {tiny}: {message:?} names neither the limit nor the minimum"
        );
    }

    // The minimum itself is accepted, and the function really is held to it.
    let (status, body) = post_session(&s, json!({"function": f, "limits": {"cpus": 0.01}})).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.data_strings(), vec!["0.0100"], "stderr: {:?}", r.stderr);

    // The CLI prints the server's refusal and creates nothing.
    let o = s.cli(&["run", &f, "--cpus", "0.0000000001"], b"");
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let e = err(&o);
    assert!(e.contains("cpus") && e.contains("0.01"), "{e:?}");
    // NaN cannot travel in JSON (it would become null: the default).
    let o = s.cli(&["run", &f, "--cpus", "nan"], b"");
    assert_eq!(o.status.code(), Some(2), "a usage error: {o:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_failure_is_a_generic_502_with_an_error_id() {
    // The image allows more CPUs than this machine has, so the engine
    // refuses the container a run asks for with them (the submit's syntax
    // check runs with the image's default limits, which it accepts). The
    // engine's answer names the machine's CPUs; its other failures name
    // container ids, users, passwd files and cgroup paths.
    let s = TestServer::start_with(|c| {
        if let Some(image) = c.images.get_mut("python") {
            let mut max = image.max.clone().unwrap_or_else(|| image.limits.clone());
            max.cpus = 4096.0;
            image.max = Some(max);
            image.warm = 0;
        }
    })
    .await;
    let f = s.submit("send('never')\n").await;
    let (status, body) = post_session(&s, json!({"function": f, "limits": {"cpus": 4000.0}})).await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the container engine failed; see the controller's log (error id "),
        "{message:?}"
    );
    for leak in ["CPU", "cpu", "daemon", "/", "4000"] {
        assert!(!message.contains(leak), "{leak:?} leaks in {message:?}");
    }
    let hex_run = message
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(hex_run < 32, "a container id leaks in {message:?}");
    // The failed container does not stay behind.
    let left = kit::labelled(&format!("{}.session", s.label_prefix)).await;
    assert!(left.is_empty(), "{} containers left", left.len());
    s.stop().await;
}
