//! What to do next, for the errors a user can fix: printed as a second
//! line (`hint: …`) under the error itself.

use crate::client::ClientError;

/// The hint for an error, if its cause is a client error we know about.
pub(super) fn for_error(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ClientError>())
        .and_then(for_client_error)
}

pub(super) fn for_client_error(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Unreachable { url, .. } => {
            Some(format!("is `bento serve` running? (BENTO_URL={url})"))
        }
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
        assert_eq!(
            for_client_error(&e).as_deref(),
            Some("is `bento serve` running? (BENTO_URL=http://127.0.0.1:1)")
        );
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
    fn hints_are_found_under_context() {
        let e: anyhow::Result<()> = Err(http(404, "unknown session token").into());
        let e = e.context("attaching failed");
        let Err(e) = e else { panic!("no error") };
        assert_eq!(for_error(&e).as_deref(), Some("see `bento ls`"));
        assert_eq!(for_error(&anyhow::anyhow!("other")), None);
    }
}
