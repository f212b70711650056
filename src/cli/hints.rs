//! What to do next, for the errors a user can fix: printed as a second
//! line (`hint: …`) under the error itself.

use crate::client::ClientError;
use clap::parser::ValueSource;
use std::sync::OnceLock;

/// Where the server URL came from, so that a hint names what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlOrigin {
    Flag,
    Env,
    Default,
}

static URL_ORIGIN: OnceLock<UrlOrigin> = OnceLock::new();

/// Records where the command's `--url` came from (the deepest subcommand's,
/// which is the one that runs). Unset when the CLI is driven as a library.
pub(super) fn note_url_origin(matches: &clap::ArgMatches) {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    // `value_source` is asked only for an id the command has.
    if !m.ids().any(|id| id == "url") {
        return;
    }
    let origin = match m.value_source("url") {
        Some(ValueSource::CommandLine) => UrlOrigin::Flag,
        Some(ValueSource::EnvVariable) => UrlOrigin::Env,
        _ => UrlOrigin::Default,
    };
    let _ = URL_ORIGIN.set(origin);
}

pub(super) fn url_origin() -> Option<UrlOrigin> {
    URL_ORIGIN.get().copied()
}

/// What to check when `url` does not answer, naming where it was set.
fn unreachable(url: &str, origin: Option<UrlOrigin>) -> String {
    match origin {
        Some(UrlOrigin::Flag) => format!("is `bento serve` running at {url}? (from --url)"),
        Some(UrlOrigin::Env) => format!("is `bento serve` running at {url}? (from BENTO_URL)"),
        Some(UrlOrigin::Default) => {
            format!("is `bento serve` running? ({url} is the default; set --url or BENTO_URL)")
        }
        None => format!("is `bento serve` running at {url}?"),
    }
}

/// The hint for an error, if its cause is a client error we know about.
pub(super) fn for_error(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ClientError>())
        .and_then(for_client_error)
}

pub(super) fn for_client_error(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Unreachable { message, .. } if message.contains("certificate") => Some(
            "the server's TLS certificate is not trusted here: add its CA to the system's \
             roots, or point SSL_CERT_FILE at it"
                .into(),
        ),
        ClientError::Unreachable { url, .. } => Some(unreachable(url, url_origin())),
        ClientError::Http { status: 401, .. } => Some("set BENTO_API_KEY or --api-key".into()),
        ClientError::Http {
            status: 404,
            message,
        } if message.contains("unknown session") => Some("see `bento ls`".into()),
        ClientError::Http {
            status: 404,
            message,
        } if message.contains("unknown function") => Some("see `bento functions`".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn http(status: u16, message: &str) -> ClientError {
        ClientError::Http {
            status,
            message: message.into(),
        }
    }

    #[test]
    fn fixable_errors_get_hints() {
        let e = ClientError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            message: "Connection refused".into(),
        };
        // Run as a library (no origin noted): the URL alone.
        assert_eq!(
            for_client_error(&e).as_deref(),
            Some("is `bento serve` running at http://127.0.0.1:1?")
        );
        let tls = ClientError::Unreachable {
            url: "https://h".into(),
            message: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(for_client_error(&tls).is_some_and(|h| h.contains("SSL_CERT_FILE")));
        let h = |s, m| for_client_error(&http(s, m));
        assert_eq!(
            h(401, "wrong API key").as_deref(),
            Some("set BENTO_API_KEY or --api-key")
        );
        assert_eq!(
            h(404, "unknown session token").as_deref(),
            Some("see `bento ls`")
        );
        assert_eq!(
            h(404, "unknown function \"f\"").as_deref(),
            Some("see `bento functions`")
        );
        assert_eq!(h(409, "image python is not built"), None);
    }

    #[test]
    fn the_unreachable_hint_names_where_the_url_came_from() {
        let u = "http://h:1";
        assert_eq!(
            unreachable(u, Some(UrlOrigin::Flag)),
            "is `bento serve` running at http://h:1? (from --url)"
        );
        assert_eq!(
            unreachable(u, Some(UrlOrigin::Env)),
            "is `bento serve` running at http://h:1? (from BENTO_URL)"
        );
        assert_eq!(
            unreachable(u, Some(UrlOrigin::Default)),
            "is `bento serve` running? (http://h:1 is the default; set --url or BENTO_URL)"
        );
    }

    #[test]
    fn hints_are_found_under_context() {
        let e: anyhow::Result<()> = Err(http(404, "unknown session token").into());
        let e = e.context("attaching failed");
        let Err(e) = e else { panic!("no error") };
        assert_eq!(for_error(&e).as_deref(), Some("see `bento ls`"));
        assert_eq!(for_error(&anyhow::anyhow!("other")), None);
    }
}
