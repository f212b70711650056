//! /metrics counts what happened, /healthz answers. (That /openapi.json
//! matches the router is checked in `api_requests.rs`, without Docker.)

mod kit;

use kit::{receive, TestServer};

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_bytes_and_start_latency() {
    let s = TestServer::start().await;
    let (_, before) = get(&format!("{}/metrics", s.url)).await;
    let created_before = sample(&before, "bento_sessions_created_total");
    let delivered_before = sample(&before, "bento_output_delivered_bytes_total");

    let f = s.submit("send('x' * 1000)\n").await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.data.first().map(Vec::len), Some(1000));
    s.wait_reaped(&token).await;

    let (status, text) = get(&format!("{}/metrics", s.url)).await;
    assert_eq!(status, 200);
    assert!(sample(&text, "bento_sessions_created_total") >= created_before + 1.0);
    assert!(sample(&text, "bento_output_delivered_bytes_total") >= delivered_before + 1000.0);
    assert!(sample(&text, "bento_container_start_seconds_count") >= 1.0);
    assert!(text.contains("bento_sessions{state=\"running\"}"));
    assert!(text.contains("bento_sessions_reaped_total{reason=\"delivered\"}"));

    let (status, body) = get(&format!("{}/healthz", s.url)).await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}
