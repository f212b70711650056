//! The one-request commands: submit, functions, ls, close.

use super::color;
use super::resolve;
use super::table::{bytes, render};
use super::time::ago;
use super::{out, ServerArgs, SubmitArgs};
use crate::client::ClientError;
use crate::wire::api::{ExitInfo, ExitReason, SessionInfo, SubmitFunction, SyntaxProblem};
use anyhow::Context;

pub(super) async fn submit(args: SubmitArgs) -> anyhow::Result<i32> {
    let raw = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let code = String::from_utf8(raw)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", args.file.display()))?;
    // Tracebacks name the file as the author knows it.
    let filename = args
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    let submitted = args
        .server
        .client()?
        .submit_function(&SubmitFunction {
            code,
            name: args.name,
            image: args.image,
            filename,
        })
        .await;
    let info = match submitted {
        Ok(info) => info,
        Err(ClientError::Syntax { problem, .. }) => {
            // The compiler's own format, which editors can jump to.
            super::say(&compiler_message(
                &args.file.display().to_string(),
                &problem,
            ));
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    // Only the id, so scripts can capture it.
    out(&info.id)?;
    Ok(0)
}

/// `FILE:LINE:COL: Kind: message`, leaving out what Python did not give.
pub(super) fn compiler_message(file: &str, p: &SyntaxProblem) -> String {
    let at = match (p.line, p.column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    };
    format!("{file}{at}: {}: {}", p.kind, p.message)
}

/// Prints JSON text (the API's answer, as it came) on stdout, one line.
pub(super) fn print_json(text: &str) -> anyhow::Result<i32> {
    out(text.trim_end())?;
    Ok(0)
}

pub(super) async fn functions(server: &ServerArgs, json: bool) -> anyhow::Result<i32> {
    let client = server.client()?;
    if json {
        return print_json(&client.functions_json().await?);
    }
    let mut list = client.list_functions().await?;
    list.sort_by_key(|f| f.created_at);
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|f| {
            vec![
                f.id,
                f.name.unwrap_or_else(|| "-".into()),
                f.image,
                bytes(f.size),
                ago(f.created_at),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "IMAGE", "SIZE", "CREATED"], &rows)
}

pub(super) async fn sessions(
    server: &ServerArgs,
    json: bool,
    no_trunc: bool,
) -> anyhow::Result<i32> {
    let client = server.client()?;
    if json {
        return print_json(&client.sessions_json().await?);
    }
    let mut list = client.list_sessions().await?;
    list.sort_by_key(|s| s.created_at);
    let colour = color::enabled();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| session_row(s, colour, no_trunc))
        .collect();
    print_table(
        &[
            "TOKEN", "FUNCTION", "STATE", "ATTACHED", "EXIT", "PENDING", "CREATED",
        ],
        &rows,
    )
}

pub(super) fn session_row(s: &SessionInfo, colour: bool, no_trunc: bool) -> Vec<String> {
    let pending = match s.pending_messages {
        0 => "-".to_string(),
        1 => format!("1 msg, {}", bytes(s.pending_bytes)),
        n => format!("{n} msgs, {}", bytes(s.pending_bytes)),
    };
    let token = if no_trunc {
        &s.token
    } else {
        resolve::short(&s.token)
    };
    vec![
        token.to_string(),
        s.function_name
            .clone()
            .unwrap_or_else(|| s.function.clone()),
        state_cell(s, colour),
        if s.attached { "yes" } else { "no" }.into(),
        s.exit.as_ref().map_or_else(|| "-".into(), exit_cell),
        pending,
        ago(s.created_at),
    ]
}

/// The state, coloured when `colour` (see [`color::of_state`]).
pub(super) fn state_cell(s: &SessionInfo, colour: bool) -> String {
    let c = color::of_state(s.state, s.exit.as_ref());
    color::paint(&s.state.to_string(), c, colour)
}

/// The code alone when the function exited by itself; the reason too otherwise.
pub(super) fn exit_cell(e: &ExitInfo) -> String {
    match e.reason {
        ExitReason::Exited { .. } => e.code.to_string(),
        _ => format!("{} ({})", e.code, e.message),
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<i32> {
    let text = render(header, rows);
    out(text.trim_end())?;
    Ok(0)
}

pub(super) async fn close(given: &str, server: &ServerArgs) -> anyhow::Result<i32> {
    let client = server.client()?;
    let token = resolve::token(&client, given).await?;
    client.close_session(&token).await?;
    Ok(0)
}

/// `bento extend TOKEN 30m`: moves the deadline and prints the new one.
pub(super) async fn extend(
    given: &str,
    by: std::time::Duration,
    server: &ServerArgs,
) -> anyhow::Result<i32> {
    let client = server.client()?;
    let token = resolve::token(&client, given).await?;
    let extended = client.extend(&token, by).await?;
    out(&format!(
        "deadline {}",
        super::time::utc_and_ago(extended.deadline)
    ))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_cells_say_why() {
        assert_eq!(exit_cell(&ExitReason::Exited { code: 3 }.into()), "3");
        assert_eq!(
            exit_cell(&ExitReason::Timeout.into()),
            "124 (killed: timed out)"
        );
    }
}
