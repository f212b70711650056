//! /openapi.json matches the router, /metrics counts what happened,
//! /healthz answers.

mod kit;

use kit::{receive, TestServer};
use serde_json::Value;

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_only_those() {
    let s = TestServer::start().await;
    let (status, body) = get(&format!("{}/openapi.json", s.url)).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert_eq!(paths.len(), bento::controller::api::ROUTES.len());
    // A live session, so token routes exist for real.
    let f = s.submit("import time\ntime.sleep(30)\n").await;
    let (token, _) = s.session(&f, &[]).await;
    let http = reqwest::Client::new();
    for route in bento::controller::api::ROUTES {
        let item = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} missing from the document", route.path));
        let url = format!("{}{}", s.url, route.path.replace("{token}", &token));
        for method in ["get", "post", "put", "delete"] {
            let documented = item.get(method).is_some();
            assert_eq!(
                documented,
                route.ops.iter().any(|o| o.method == method),
                "{method} {}",
                route.path
            );
            if route.path.ends_with("/kill") {
                continue; // probing it would end the session under test
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                .unwrap_or(reqwest::Method::GET);
            let status = http
                .request(m, &url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            // The router serves exactly the documented methods.
            assert_eq!(
                status == 405,
                !documented,
                "{method} {} answered {status}",
                route.path
            );
        }
        for op in route.ops {
            let responses = item[op.method]["responses"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert!(
                responses.contains_key(&op.ok.0.to_string()),
                "{} {}",
                op.method,
                route.path
            );
        }
    }
    // Bodies are described by schemas derived from the Rust types.
    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in [
        "SubmitFunction",
        "CreateSession",
        "SessionInfo",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    if let Err(e) = s.client.kill_session(&token).await {
        panic!("kill: {e}");
    }
    s.stop().await;
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
