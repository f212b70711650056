//! `bento inspect TOKEN`: one session in full, as `key  value` lines (or
//! the API's JSON with `--json`).

use super::simple::{print_json, state_cell};
use super::table::{bytes, key_values};
use super::time::{duration, utc_and_ago};
use super::{color, out, InspectArgs};
use crate::wire::api::Limits;
use crate::wire::api::{ExitInfo, SessionInfo};

pub(super) async fn inspect(args: InspectArgs) -> anyhow::Result<i32> {
    let client = args.server.client()?;
    // A session not live (reaped) may still have its record.
    let live = match super::resolve::token(&client, &args.token).await {
        Ok(token) => client
            .session(&token)
            .await
            .map(|_| token)
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let token = match live {
        Ok(token) => token,
        Err(e) => return reaped(&client, &args, e).await,
    };
    if args.json.json {
        return print_json(&client.session_json(&token).await?);
    }
    let info = client.session(&token).await?;
    let text = describe(&info, color::enabled());
    out(text.trim_end())?;
    Ok(0)
}

/// `inspect` of what is not live: the reaped session's record, or, if
/// there is none, the error the live lookup gave.
async fn reaped(
    client: &crate::client::Client,
    args: &InspectArgs,
    live_error: anyhow::Error,
) -> anyhow::Result<i32> {
    let Ok(record) = client.history_record(&args.token).await else {
        return Err(live_error);
    };
    if args.json.json {
        return print_json(&serde_json::to_string_pretty(&record)?);
    }
    out(super::history::describe(&record).trim_end())?;
    Ok(0)
}

/// The human form: one `key  value` line per fact.
fn describe(s: &SessionInfo, colour: bool) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let function = match &s.function_name {
        Some(name) => format!("{name} ({})", s.function),
        None => s.function.clone(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        // Shortened as `ls` shows it: inspect output gets copied into
        // tickets and chats, and the whole token is the session's key
        // (`--json` has it, for scripts). Without a mark, so that what is
        // shown can be pasted back as a prefix.
        ("token", super::resolve::short(&s.token).to_string()),
        ("id", s.id.clone()),
        ("function", function),
        ("image", s.image.clone()),
        ("state", state_cell(s, colour)),
        ("attached", yes_no(s.attached)),
        ("transient", yes_no(s.transient)),
        (
            "start",
            if s.warm {
                "warm (from the pool)"
            } else {
                "cold"
            }
            .into(),
        ),
    ];
    match &s.limits {
        Some(l) => rows.extend(limit_rows(l)),
        None => rows.push(("limits", "-".into())),
    }
    rows.push(("created", utc_and_ago(s.created_at)));
    // The API keeps the deadline that was set; once the function has
    // ended it no longer means anything is coming.
    let deadline = match (s.ended_at, s.deadline) {
        (Some(_), _) => "- (ended)".to_string(),
        (None, d) => d.map_or("-".into(), utc_and_ago),
    };
    rows.push(("deadline", deadline));
    if let Some(idle) = s.idle_deadline {
        // Only while it runs with nobody attached: activity moves it.
        rows.push((
            "idle until",
            format!("{} unless there is activity", utc_and_ago(idle)),
        ));
    }
    rows.push(("ended", s.ended_at.map_or("-".into(), utc_and_ago)));
    rows.push(("exit", s.exit.as_ref().map_or("-".into(), exit_words)));
    rows.push(("pending", pending(s)));
    rows.push(("last seq", s.last_seq.to_string()));
    if !s.env.is_empty() {
        // Names only: the API never gives values back.
        rows.push(("env", s.env.join(", ")));
    }
    if !s.secrets.is_empty() {
        let secrets: Vec<String> = s
            .secrets
            .iter()
            .map(|u| match &u.env {
                Some(var) => format!("{} as {var}", u.name),
                None => u.name.clone(),
            })
            .collect();
        rows.push(("secrets", secrets.join(", ")));
    }
    rows.push(("forkable", yes_no(s.forkable)));
    if let Some(u) = &s.usage {
        rows.extend(super::usage::rows(u));
    }
    if let Some(f) = &s.fork {
        rows.push((
            "fork of",
            format!("{} after input {} ({})", f.parent, f.at_input, f.state),
        ));
    }
    key_values(rows)
}

pub(super) fn limit_rows(l: &Limits) -> Vec<(&'static str, String)> {
    let timeout = if l.timeout.is_zero() {
        "none".to_string()
    } else {
        duration(l.timeout.as_secs())
    };
    let mut rows = vec![
        ("memory", bytes(l.memory)),
        ("cpus", l.cpus.to_string()),
        ("pids", l.pids.to_string()),
        ("timeout", timeout),
    ];
    if !l.idle_timeout.is_zero() {
        rows.push(("idle timeout", duration(l.idle_timeout.as_secs())));
    }
    rows
}

/// `exited with code 0`, or `killed: timed out (exit code 124)`.
pub(super) fn exit_words(e: &ExitInfo) -> String {
    match e.reason {
        crate::wire::api::ExitReason::Exited { .. } => e.message.clone(),
        _ => format!("{} (exit code {})", e.message, e.code),
    }
}

/// What the session holds for a client: `3 msgs, 1.2 KiB (0 B spooled)`.
fn pending(s: &SessionInfo) -> String {
    let msgs = match s.pending_messages {
        1 => "1 msg".to_string(),
        n => format!("{n} msgs"),
    };
    format!(
        "{msgs}, {} ({} spooled to disk)",
        bytes(s.pending_bytes),
        bytes(s.spooled_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::api::{ExitReason, SessionState};
    use std::time::Duration;

    fn info() -> SessionInfo {
        SessionInfo {
            token: "t0k".into(),
            id: "s-1".into(),
            function: "fn-abc".into(),
            function_name: Some("hello".into()),
            image: "python".into(),
            state: SessionState::Ended,
            transient: false,
            attached: false,
            exit: Some(ExitReason::Timeout.into()),
            pending_messages: 2,
            pending_bytes: 2048,
            created_at: 1_763_764_800,
            ended_at: Some(1_763_764_830),
            last_seq: 3,
            spooled_bytes: 0,
            limits: Some(Limits {
                memory: 256 << 20,
                cpus: 0.5,
                pids: 64,
                timeout: Duration::from_secs(30),
                idle_timeout: Duration::ZERO,
            }),
            deadline: Some(1_763_764_830),
            idle_deadline: None,
            warm: true,
            forkable: true,
            fork: None,
            usage: None,
            env: Vec::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn a_fork_says_whose_and_how_its_replay_stands() {
        let mut s = info();
        assert!(!describe(&s, false).contains("fork of"));
        s.fork = Some(crate::wire::api::ForkInfo {
            parent: "s-parent".into(),
            at_input: 10,
            state: crate::wire::api::ForkState::Diverged,
        });
        let text = describe(&s, false);
        assert!(
            text.contains("fork of    s-parent after input 10 (diverged)\n"),
            "{text}"
        );
        assert!(text.contains("forkable   yes\n"), "{text}");
    }

    #[test]
    fn every_fact_has_a_line() {
        let text = describe(&info(), false);
        for want in [
            "token      t0k\n",
            "function   hello (fn-abc)\n",
            "state      ended\n",
            "start      warm (from the pool)\n",
            "memory     256.0 MiB\n",
            "cpus       0.5\n",
            "pids       64\n",
            "timeout    30s\n",
            "created    2025-11-21 22:40:00 UTC (",
            "exit       killed: timed out (exit code 124)\n",
            "deadline   - (ended)\n",
            "pending    2 msgs, 2.0 KiB (0 B spooled to disk)\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let coloured = describe(&info(), true);
        assert!(
            coloured.contains("state      \x1b[31mended\x1b[0m\n"),
            "{coloured}"
        );
    }
}
