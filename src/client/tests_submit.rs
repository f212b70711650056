//! Submitting to a controller from before file names, which refuses the
//! `filename` field: the client submits again without it.

use super::{Client, ClientError};
use crate::wire::api::SubmitFunction;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A controller that answers as the old one did: 400 for any unknown
/// field, else a function without `filename` (and 400 for the code
/// "refuse"). Returns its URL and the
/// bodies it received.
async fn old_controller() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().route(
        "/v1/functions",
        post(move |Json(body): Json<Value>| {
            let log = log.clone();
            async move {
                let unknown = body
                    .as_object()
                    .and_then(|o| o.keys().find(|k| !["code", "name", "image"].contains(&k.as_str())))
                    .cloned();
                // Code it refuses for its own reasons, whatever the fields.
                let refuse = body["code"] == "refuse";
                if let Ok(mut l) = log.lock() {
                    l.push(body);
                }
                let error = |m: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": m })));
                match (refuse, unknown) {
                    (true, _) => error("no".into()),
                    (false, Some(k)) => error(format!(
                        "Failed to deserialize the JSON body into the target type: unknown field `{k}`, expected one of `code`, `name`, `image` at line 1 column 40"
                    )),
                    (false, None) => (
                        StatusCode::CREATED,
                        Json(json!({"id": "fn-000000000001", "name": null, "image": "python", "size": 4, "created_at": 1})),
                    ),
                }
            }
        }),
    );
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(a) => format!("http://{a}"),
        Err(e) => panic!("addr: {e}"),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn an_old_controller_gets_the_function_without_a_file_name() -> Result<(), ClientError> {
    let (url, seen) = old_controller().await;
    let client = Client::new(&url, None)?;
    let body = SubmitFunction {
        code: "pass".into(),
        name: None,
        image: None,
        filename: Some("counter.py".into()),
    };
    let info = client.submit_function(&body).await?;
    assert_eq!(info.filename, "function.py");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["filename"], "counter.py");
    assert!(seen[1].get("filename").is_none(), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn other_refusals_are_not_retried() -> Result<(), ClientError> {
    let (url, seen) = old_controller().await;
    let client = Client::new(&url, None)?;
    let body = SubmitFunction {
        code: "refuse".into(),
        name: None,
        image: None,
        filename: Some("counter.py".into()),
    };
    match client.submit_function(&body).await {
        Err(ClientError::Http {
            status: 400,
            message,
        }) => assert_eq!(message, "no"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 1);
    Ok(())
}
