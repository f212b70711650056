//! The web console: hand-written HTML, CSS and ES modules from `console/`,
//! embedded in the binary and served under `/ui/` (`/ui` redirects there).
//!
//! The assets are public code and need no API key; every piece of data the
//! page shows comes from the API, which does. Each answer carries a strict
//! content security policy (scripts from this origin only, no inline script,
//! no framing; styles from this origin or the page's one `<style>`, by its
//! hash), `nosniff`, and `no-cache` so a new binary's assets are picked up
//! at once (they are small).
//!
//! The stylesheet is inline in `index.html`, so the first paint waits for
//! the page alone, not for a second request (`docs/console.md`).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use super::AppState;

/// The policy every console answer carries. `connect-src 'self'` covers the
/// API and the attach WebSocket on the same host and port. The hash is the
/// one of `index.html`'s `<style>` (a test checks it, and says the new one
/// when the style changes): no other inline style is allowed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; \
style-src 'self' 'sha256-Rhq9+i4H598ySOMkiJWH7TQAblFO0KD4Lt7RQi2ltJk='; \
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

    /// Standard base64 with padding, as CSP hashes are written.
    fn base64(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// SHA-256, as the policy's `'sha256-…'` source takes it.
    fn sha256(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }

    #[test]
    fn the_policy_allows_the_pages_one_style_by_its_hash() {
        // Known answers (FIPS 180-2's "abc", and the empty message).
        assert_eq!(
            base64(&sha256(b"abc")),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert_eq!(
            base64(&sha256(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            base64(&sha256(&[b'x'; 200])),
            "qiDCPjIBg0BQZ54diJQbmm/tBVfJpwXLLDFeLmP9SG0="
        );
        assert_eq!(base64(b"abcd"), "YWJjZA==");
        assert_eq!(base64(b"abcde"), "YWJjZGU=");
        assert_eq!(base64(b"abc"), "YWJj");
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or("");
        assert_eq!(html.matches("<style>").count(), 1, "one <style>");
        let style = html
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(style, _)| style)
            .unwrap_or("");
        assert!(style.contains(":root {"), "{style}");
        let hash = base64(&sha256(style.as_bytes()));
        assert!(
            CSP.contains(&format!("style-src 'self' 'sha256-{hash}';")),
            "index.html's <style> has the hash {hash}, which CSP does not allow: {CSP}"
        );
        assert!(!html.contains(" style=\""), "an inline style attribute");
        assert!(
            !html.contains("rel=\"stylesheet\""),
            "a stylesheet to wait for"
        );
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
