//! API-key authentication: `Authorization: Bearer KEY` on every request,
//! compared in constant time. On loopback the key is optional; elsewhere the
//! server refuses to start without one (see [`crate::controller::run`]).
//!
//! A browser cannot set headers on a WebSocket, so the attach WebSocket also
//! takes the key as a subprotocol: the client offers [`WS_PROTOCOL`] and
//! `bento.key.HEX` (the key's bytes in hex), and the server answers with
//! [`WS_PROTOCOL`] alone. The key is then in no URL (which proxies log) and
//! is never echoed back; it is taken out of the request before the handler
//! sees it.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::controller::tenancy::{Credential, Peer, Principal, Role, DEFAULT_TENANT};
use tokio_util::sync::CancellationToken;

/// The subprotocol a WebSocket client offers to be answered with: the
/// console's attach speaks the protocol of `docs/api.md` under this name.
pub const WS_PROTOCOL: &str = "bento.v1";
/// The prefix of the subprotocol that carries the key, in hex.
pub const WS_KEY_PREFIX: &str = "bento.key.";

/// Compares two byte strings in time that depends only on their lengths, so
/// the comparison does not reveal how much of a guessed key was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// What a WebSocket request's `Sec-WebSocket-Protocol` offered.
#[derive(Debug, Default, PartialEq)]
struct Offered {
    /// [`WS_PROTOCOL`] was among them.
    protocol: bool,
    /// The key, from `bento.key.HEX` (`Some(empty)`: not hex).
    key: Option<Vec<u8>>,
    /// The others, to hand on.
    rest: Vec<String>,
}

fn parse_offered(values: &str) -> Offered {
    let mut o = Offered::default();
    for p in values.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if p == WS_PROTOCOL {
            o.protocol = true;
        } else if let Some(hex) = p.strip_prefix(WS_KEY_PREFIX) {
            o.key = Some(from_hex(hex).unwrap_or_default());
        } else {
            o.rest.push(p.to_string());
        }
    }
    o
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Takes the key subprotocol out of a WebSocket upgrade request.
fn take_offered(req: &mut Request) -> Offered {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_ws {
        return Offered::default();
    }
    let all: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let o = parse_offered(&all.join(","));
    let h = req.headers_mut();
    h.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(v) = HeaderValue::from_str(&o.rest.join(", ")) {
        if !o.rest.is_empty() {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    o
}

pub async fn require_key(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let offered = take_offered(&mut req);
    let addr = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let mut answer = match identify(&s, &req, offered.key.as_deref()) {
        Ok(None) => next.run(req).await,
        Ok(Some(mut principal)) => {
            principal.addr = addr;
            match allowed(&principal, &req) {
                Ok(()) => {
                    s.audit.key_used(&principal);
                    req.extensions_mut().insert(principal);
                    next.run(req).await
                }
                Err(e) => e.into_response(),
            }
        }
        Err(e) => e.into_response(),
    };
    if offered.protocol && answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        answer.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(WS_PROTOCOL),
        );
    }
    answer
}

/// The attach route: the one a session token alone may open.
fn is_attach(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .uri()
            .path()
            .strip_prefix("/v1/sessions/")
            .and_then(|rest| rest.strip_suffix("/attach"))
            .is_some_and(|token| !token.is_empty() && !token.contains('/'))
}

/// Routes only an admin may use: tenants, keys, and the metrics of every
/// tenant.
fn admin_only(path: &str) -> bool {
    path == "/metrics"
        || path == "/v1/tenants"
        || path.starts_with("/v1/tenants/")
        || path == "/v1/keys"
        || path.starts_with("/v1/keys/")
}

/// Who the request speaks for; `None` on the open paths (health, console
/// assets), which need no one.
fn identify(
    s: &AppState,
    req: &Request,
    from_protocol: Option<&[u8]>,
) -> Result<Option<Principal>, ApiError> {
    // The health check stays open so orchestrators can probe it, and the
    // console's assets are public code (their data comes from the API).
    let path = req.uri().path();
    if path == "/healthz" || super::console::is_console_path(path) {
        return Ok(None);
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|g| g.trim().as_bytes())
        .or(from_protocol);
    let keyed = s.config.api_key.is_some() || s.keys.has_keys();
    let Some(given) = given else {
        if !keyed {
            return Ok(Some(Principal::default_admin(Credential::Open)));
        }
        if is_attach(req) {
            // The token is the capability; the handler checks the tenant's
            // setting once it knows the session.
            return Ok(Some(Principal {
                tenant: String::new(),
                role: Role::User,
                credential: Credential::TokenOnly,
                revoked: CancellationToken::new(),
                addr: None,
            }));
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send Authorization: Bearer KEY (bento --api-key or BENTO_API_KEY)",
        ));
    };
    if let Some(key) = s.config.api_key.as_deref() {
        if constant_time_eq(given, key.as_bytes()) {
            return Ok(Some(Principal::default_admin(Credential::LegacyKey)));
        }
    }
    let given = std::str::from_utf8(given).unwrap_or("");
    if let Some(owner) = s.keys.check(given) {
        return Ok(Some(Principal {
            tenant: owner.tenant,
            role: owner.role,
            credential: Credential::Key(owner.id),
            revoked: owner.revoked,
            addr: None,
        }));
    }
    if !keyed {
        // A key sent to a controller that has none: as before tenants,
        // loopback without keys lets everything in.
        return Ok(Some(Principal::default_admin(Credential::Open)));
    }
    if s.keys.is_revoked(given) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this API key was revoked",
        ));
    }
    Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong API key"))
}

/// What the principal's role allows on this route.
fn allowed(p: &Principal, req: &Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    if p.credential == Credential::TokenOnly && !is_attach(req) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send Authorization: Bearer KEY",
        ));
    }
    if admin_only(path) && p.role < Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this needs an admin key; this key's role is {}", p.role),
        ));
    }
    // Every tenant's figures: the operator's (an admin of the default
    // tenant) only.
    if path == "/metrics" && p.tenant != DEFAULT_TENANT {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "/metrics covers every tenant: it needs an admin key of the default tenant",
        ));
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD) && !is_attach(req);
    if !reads && p.role < Role::User {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this key is a viewer's: it can list and watch, not attach, send input, \
             close, kill or change anything",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, parse_offered, Offered};

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn the_key_subprotocol_is_hex_and_taken_out() {
        let o = parse_offered("bento.v1, bento.key.6b6579, chat");
        assert_eq!(
            o,
            Offered {
                protocol: true,
                key: Some(b"key".to_vec()),
                rest: vec!["chat".into()],
            }
        );
        // Not hex (odd length, bad digit): a key that matches nothing.
        assert_eq!(parse_offered("bento.key.6b6").key, Some(vec![]));
        assert_eq!(parse_offered("bento.key.zz").key, Some(vec![]));
        assert_eq!(parse_offered("").key, None);
        assert!(!parse_offered("bento.v2").protocol);
    }
}
