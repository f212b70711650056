//! Session references on the command line: a full token, a unique prefix
//! of one (at least [`MIN_PREFIX`] characters), or a session's `s-…` id.
//!
//! A prefix is resolved here, in the client, against `GET /v1/sessions`,
//! which the API key already allows: it can only find sessions the caller
//! could list anyway, and the server still needs the full token (and the
//! key) for everything else. So a prefix never grants more than the key
//! does; were keys ever scoped to tenants, a prefix would resolve only
//! within what the key lists.

use crate::client::Client;
use crate::wire::api::SessionInfo;

/// Tokens are 64 hex characters (256 bits).
const TOKEN_LEN: usize = 64;
/// How much of a token `bento ls` shows.
pub(super) const SHORT: usize = 12;
/// The shortest prefix accepted: short enough to type, long enough that
/// it is not a guess that matches whatever happens to be there.
pub(super) const MIN_PREFIX: usize = 6;

/// The first [`SHORT`] characters of a token.
pub(super) fn short(token: &str) -> &str {
    token.get(..SHORT).unwrap_or(token)
}

/// The full token `given` refers to. A full token goes to the server as
/// it is (one request fewer, and an unknown one gets the server's answer).
pub(super) async fn token(client: &Client, given: &str) -> anyhow::Result<String> {
    if given.len() == TOKEN_LEN || !looks_like_a_reference(given)? {
        return Ok(given.to_string());
    }
    let sessions = client.list_sessions().await?;
    pick(given, &sessions)
}

/// Whether `given` is a prefix or an id to look up. What is neither (not
/// hex) goes to the server as it is, which answers for it; a hex prefix
/// too short to be unique enough is refused here.
fn looks_like_a_reference(given: &str) -> anyhow::Result<bool> {
    if given.starts_with("s-") {
        return Ok(true);
    }
    if given.is_empty() || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    if given.len() < MIN_PREFIX {
        anyhow::bail!("token prefix {given:?} is too short: give at least {MIN_PREFIX} characters");
    }
    Ok(true)
}

/// The one session in `sessions` that `given` names.
fn pick(given: &str, sessions: &[SessionInfo]) -> anyhow::Result<String> {
    let given_lower = given.to_ascii_lowercase();
    let matches: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| {
            if given.starts_with("s-") {
                s.id == given
            } else {
                s.token.starts_with(&given_lower)
            }
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.token.clone()),
        [] => Err(anyhow::anyhow!(
            "unknown session {given:?}: no session listed matches it"
        )),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|s| format!("{} ({})", short(&s.token), s.id))
                .collect();
            Err(anyhow::anyhow!(
                "{given:?} is ambiguous: it matches {}; give more characters",
                ids.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::api::SessionState;

    fn session(token: &str, id: &str) -> SessionInfo {
        SessionInfo {
            token: token.into(),
            id: id.into(),
            function: "fn-1".into(),
            function_name: None,
            image: "python".into(),
            state: SessionState::Running,
            transient: false,
            attached: false,
            exit: None,
            pending_messages: 0,
            pending_bytes: 0,
            created_at: 0,
            ended_at: None,
            last_seq: 0,
            spooled_bytes: 0,
            limits: None,
            deadline: None,
            idle_deadline: None,
            warm: false,
            forkable: true,
            fork: None,
            usage: None,
            env: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn two() -> Vec<SessionInfo> {
        vec![
            session(&format!("abcdef01{}", "0".repeat(56)), "s-one"),
            session(&format!("abcdef02{}", "0".repeat(56)), "s-two"),
        ]
    }

    #[test]
    fn a_unique_prefix_or_an_id_finds_its_session() -> anyhow::Result<()> {
        let list = two();
        assert_eq!(pick("abcdef01", &list)?, list[0].token);
        // Upper case hex is the same token.
        assert_eq!(pick("ABCDEF02", &list)?, list[1].token);
        assert_eq!(pick("s-two", &list)?, list[1].token);
        Ok(())
    }

    #[test]
    fn ambiguous_and_unknown_prefixes_say_so() {
        let list = two();
        let e = pick("abcdef", &list).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.contains("ambiguous") && e.contains("abcdef010000 (s-one)") && e.contains("s-two"),
            "{e}"
        );
        let e = pick("ffffff", &list).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("unknown session"));
        // An id matches whole, never by prefix.
        assert!(pick("s-tw", &list).is_err());
    }

    #[test]
    fn short_prefixes_are_refused_before_asking() {
        let shape = |s| looks_like_a_reference(s).map_err(|e| e.to_string());
        assert!(shape("abcde").is_err_and(|e| e.contains("at least 6")));
        assert_eq!(shape("xyz123"), Ok(false), "not hex: the server's to judge");
        assert_eq!(shape("abcdef"), Ok(true));
        assert_eq!(shape("s-1a2b"), Ok(true));
        assert_eq!(short(&"a".repeat(64)), "a".repeat(12));
        assert_eq!(short("abc"), "abc");
    }
}
