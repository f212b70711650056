//! The web console: hand-written HTML, CSS and ES modules from `console/`,
//! embedded in the binary and served under `/ui/` (`/ui` redirects there).
//!
//! The assets are public code and need no API key; every piece of data the
//! page shows comes from the API, which does. Each answer carries a strict
//! content security policy (scripts from this origin only, no inline script,
//! no framing), `nosniff`, and `no-cache` so a new binary's assets are
//! picked up at once (they are small).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use super::AppState;

/// The policy every console answer carries. `connect-src 'self'` covers the
/// API and the attach WebSocket on the same host and port.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("attach.js", JS),
    asset!("dom.js", JS),
    asset!("functions.js", JS),
    asset!("health.js", JS),
    asset!("images.js", JS),
    asset!("output.js", JS),
    asset!("session.js", JS),
    asset!("sessions.js", JS),
    asset!("watch.js", JS),
];

/// `/ui` and everything under it. Mounted beside the API's routes, behind
/// the same middleware, which lets these paths through without a key.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{name}",
            get(|Path(name): Path<String>| async move { serve(&name) }),
        )
}

/// Whether `path` is one of the console's (served without a key).
pub fn is_console_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn serve(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return with_headers(
            (StatusCode::NOT_FOUND, "no such file in the console\n").into_response(),
            "text/plain; charset=utf-8",
        );
    };
    with_headers(a.body.into_response(), a.content_type)
}

fn with_headers(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_the_policy() {
        for a in ASSETS {
            let r = serve(a.name);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_has_no_inline_script() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or("");
        assert!(html.contains("<script type=\"module\" src=\"app.js\">"));
        assert!(!html.contains("<script>") && !html.contains("onclick"));
        // Every module the page imports is served.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap_or("");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split('"').nth(1) else {
                    continue;
                };
                let file = from.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|b| b.name == file),
                    "{} imports {from}, which is not served",
                    a.name
                );
            }
        }
    }
}
