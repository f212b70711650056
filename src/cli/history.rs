//! `bento ls -a`: live sessions with the records of reaped ones, and the
//! filters of `bento ls` (state, function, time); `bento inspect` of a
//! reaped session.

use super::args::LsFilter;
use super::simple::{exit_cell, print_json, session_row};
use super::table::{bytes, key_values, render};
use super::time::{ago, utc_and_ago};
use super::{out, ServerArgs};
use crate::client::{Client, HistoryFilter};
use crate::wire::api::{HistoryRecord, SessionInfo};

/// The most reaped records one listing shows.
const MAX_REAPED: usize = 10_000;

const STATES: [&str; 5] = ["starting", "resuming", "running", "ended", "reaped"];

/// Seconds since the epoch `ago` ("1h", "30m") before now.
fn before_now(ago: &str, flag: &str) -> anyhow::Result<u64> {
    let d = crate::wire::duration::parse_duration(ago).ok_or_else(|| {
        anyhow::anyhow!("{flag} {ago:?}: give a duration such as 30s, 15m, 1h, 2d")
    })?;
    Ok(crate::session::record::now_secs().saturating_sub(d.as_secs()))
}

/// Whether a live session passes the filters.
fn keeps(s: &SessionInfo, f: &LsFilter, since: Option<u64>, until: Option<u64>) -> bool {
    f.state
        .as_deref()
        .is_none_or(|st| s.state.to_string() == st)
        && f.function
            .as_deref()
            .is_none_or(|name| s.function == name || s.function_name.as_deref() == Some(name))
        && since.is_none_or(|t| s.created_at >= t)
        && until.is_none_or(|t| s.created_at <= t)
}

pub(super) async fn list(
    server: &ServerArgs,
    json: bool,
    no_trunc: bool,
    f: &LsFilter,
) -> anyhow::Result<i32> {
    if let Some(st) = f.state.as_deref() {
        if !STATES.contains(&st) {
            anyhow::bail!("--state {st:?}: one of {}", STATES.join(", "));
        }
    }
    let since = f
        .since
        .as_deref()
        .map(|s| before_now(s, "--since"))
        .transpose()?;
    let until = f
        .until
        .as_deref()
        .map(|s| before_now(s, "--until"))
        .transpose()?;
    let client: Client = server.client()?;
    let mut live = client.list_sessions().await?;
    live.retain(|s| keeps(s, f, since, until));
    live.sort_by_key(|s| s.created_at);
    let wants_reaped = f.all || f.state.as_deref() == Some("reaped");
    let reaped = if wants_reaped && f.state.as_deref().is_none_or(|s| s == "reaped") {
        let filter = HistoryFilter {
            function: f.function.clone(),
            since,
            until,
            // Whole pages of the most the server gives.
            limit: Some(f.limit.unwrap_or(MAX_REAPED).clamp(1, 500)),
            cursor: None,
        };
        let mut r = client
            .history(&filter, f.limit.unwrap_or(MAX_REAPED))
            .await?;
        r.reverse(); // oldest first, like the live ones
        r
    } else {
        vec![]
    };
    if json {
        let text = if wants_reaped {
            serde_json::to_string_pretty(&serde_json::json!({"sessions": live, "reaped": reaped}))?
        } else {
            serde_json::to_string_pretty(&live)?
        };
        return print_json(&text);
    }
    let colour = super::color::enabled();
    let mut rows: Vec<Vec<String>> = live
        .iter()
        .map(|s| session_row(s, colour, no_trunc))
        .collect();
    rows.extend(reaped.iter().map(reaped_row));
    let header = [
        "TOKEN", "FUNCTION", "STATE", "ATTACHED", "EXIT", "PENDING", "CREATED",
    ];
    out(render(&header, &rows).trim_end())?;
    Ok(0)
}

/// A reaped session in the listing: its id where a token would be (the
/// token is not kept).
fn reaped_row(r: &HistoryRecord) -> Vec<String> {
    vec![
        r.id.clone(),
        r.function_name
            .clone()
            .unwrap_or_else(|| r.function.clone()),
        "reaped".into(),
        "no".into(),
        r.exit.as_ref().map_or_else(|| "-".into(), exit_cell),
        "-".into(),
        ago(r.created_at),
    ]
}

/// `bento inspect` of a reaped session: its record, marked as reaped.
pub(super) fn describe(r: &HistoryRecord) -> String {
    let function = match &r.function_name {
        Some(name) => format!("{name} ({})", r.function),
        None => r.function.clone(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("id", r.id.clone()),
        (
            "state",
            "reaped (its output is gone; this is its record)".into(),
        ),
        ("function", function),
        ("image", r.image.clone()),
        ("kind", r.kind.clone()),
    ];
    if let Some(l) = &r.limits {
        rows.extend(super::inspect::limit_rows(l));
    }
    rows.push(("created", utc_and_ago(r.created_at)));
    rows.push(("started", utc_and_ago(r.started_at)));
    rows.push(("ended", r.ended_at.map_or("-".into(), utc_and_ago)));
    rows.push((
        "reaped",
        format!("{} ({})", utc_and_ago(r.reaped_at), r.reaped_why),
    ));
    rows.push((
        "exit",
        r.exit
            .as_ref()
            .map_or("-".into(), super::inspect::exit_words),
    ));
    rows.push((
        "input",
        format!("{} msgs, {}", r.messages_in, bytes(r.bytes_in)),
    ));
    rows.push((
        "output",
        format!("{} msgs, {}", r.messages_out, bytes(r.bytes_out)),
    ));
    rows.push(("reconnects", r.reconnects.to_string()));
    match &r.usage {
        Some(u) => rows.extend(super::usage::rows(u)),
        None => rows.push(("usage", "-".into())),
    }
    key_values(rows)
}
