//! `bento run` and `bento attach`: follow a session's output on the
//! terminal, feed it stdin, and exit with the function's exit code.

use super::io::{read_line, MAX_LINE};
use super::writer::Writer;
use super::{out, say, AttachArgs, AttachFlags, ForkArgs, RunArgs};
use crate::client::{
    AttachEnd, AttachOptions, Attachment, Client, DetachHandle, Event, InputSender,
};
use crate::wire::api::{
    CloseReason, CreateSession, DeadlineKind, ExitInfo, ExitReason, ForkSession, OnDivergence,
};
use anyhow::Context;
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub(super) async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let client = args.server.client()?;
    let (env, secrets) = args.env.request()?;
    let created = client
        .create_session(&CreateSession {
            function: args.function,
            args: args.args,
            transient: args.transient,
            limits: args.limits.request(),
            forkable: args.no_fork.then_some(false),
            env,
            secrets,
        })
        .await?;
    take_up(&client, &created.token, args.detach, &args.flags, "session").await
}

pub(super) async fn fork(args: ForkArgs) -> anyhow::Result<i32> {
    let client = args.server.client()?;
    let token = super::resolve::token(&client, &args.token).await?;
    let on_divergence = match args.on_divergence.as_deref() {
        Some("continue") => Some(OnDivergence::Continue),
        Some(_) => Some(OnDivergence::Kill),
        None => None,
    };
    let body = ForkSession {
        at_input: args.at_input,
        on_divergence,
    };
    let created = client.fork_session(&token, &body).await?;
    take_up(&client, &created.token, args.detach, &args.flags, "fork").await
}

/// A session just created (a run's, or a fork): its token printed when
/// detached, else followed. The token is printed nowhere else, so a failed
/// attach says it, with the command that reattaches.
async fn take_up(
    client: &Client,
    token: &str,
    detach: bool,
    flags: &AttachFlags,
    what: &str,
) -> anyhow::Result<i32> {
    if detach {
        out(token)?;
        return Ok(0);
    }
    follow(client, token, flags, true).await.with_context(|| {
        format!(
            "{what} {token} was created but attaching failed; try: {}",
            reattach_command(client, token, super::hints::url_origin())
        )
    })
}

pub(super) async fn attach(args: AttachArgs) -> anyhow::Result<i32> {
    let client = args.server.client()?;
    let token = super::resolve::token(&client, &args.token).await?;
    follow(&client, &token, &args.flags, !args.no_stdin).await
}

fn reattach_hint(client: &Client, token: &str) -> String {
    format!(
        "the function keeps running. Reattach with: {}",
        reattach_command(client, token, super::hints::url_origin())
    )
}

/// The command that picks the session up again, ready to paste: with the
/// `--url` it was given (an environment variable is still set; the
/// default needs nothing).
fn reattach_command(
    client: &Client,
    token: &str,
    origin: Option<super::hints::UrlOrigin>,
) -> String {
    match origin {
        Some(super::hints::UrlOrigin::Flag) => format!(
            "bento attach {token} --url {}",
            client.url().as_str().trim_end_matches('/')
        ),
        _ => format!("bento attach {token}"),
    }
}

async fn follow(
    client: &Client,
    token: &str,
    flags: &AttachFlags,
    stdin: bool,
) -> anyhow::Result<i32> {
    let options = AttachOptions {
        reconnect: !flags.no_reconnect,
        ..AttachOptions::default()
    };
    super::writer::keep_freed_memory();
    let mut att = client.attach(token, options).await?;
    if std::io::stderr().is_terminal() {
        // Docker users expect Ctrl-C to stop what they run; here it does
        // not, so say so before it matters.
        say("bento: Ctrl-C detaches (the function keeps running); press it twice within 1 s to stop it");
    }
    let mut sig = watch_signals(att.detach_handle(), client.clone(), token.to_string())?;
    if stdin {
        tokio::spawn(pump_stdin(att.input()));
    }
    let written = att.written_handle();
    let stdout = terminal(std::io::stdout().as_fd())?;
    super::writer::grow_pipe(&stdout);
    let writer = Writer::spawn(
        stdout,
        terminal(std::io::stderr().as_fd())?,
        flags.raw,
        move |seq| written.written(seq),
    )
    .context("cannot start the output thread")?;
    let mut follower = Follower {
        exit: None,
        usage: flags.usage,
        token: token.to_string(),
    };
    let followed = follower.follow(&mut att, &writer, &mut sig).await;
    // Whatever ended it, what was queued goes out before anything is said.
    let followed = match (followed, writer.flush().await) {
        (Ok(end), Ok(())) => Ok(end),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    match followed {
        Ok(AttachEnd::Detached) => {
            let code = (*sig.borrow()).unwrap_or(1);
            att.detach().await;
            say(&format!("detached; {}", reattach_hint(client, token)));
            Ok(code)
        }
        Ok(end) => Ok(follower.finish(end, client, token)),
        Err(e) => {
            // Output could not be written: leave it on the server (unacked)
            // for a later attach rather than dropping it.
            att.detach().await;
            say(&format!(
                "bento: cannot write output: {e}; detached, {}",
                reattach_hint(client, token)
            ));
            Ok(1)
        }
    }
}

/// A file for one of our standard streams, for the output thread: a
/// duplicate of its descriptor, written without buffering in between.
fn terminal(fd: BorrowedFd<'_>) -> anyhow::Result<File> {
    let owned = fd
        .try_clone_to_owned()
        .context("cannot duplicate a standard stream")?;
    Ok(File::from(owned))
}

/// What `run` and `attach` say on stderr when the session's end nears.
fn deadline_line(token: &str, reason: DeadlineKind, in_secs: u64) -> String {
    let when = super::time::duration(in_secs);
    match reason {
        DeadlineKind::Timeout => format!(
            "bento: the session ends in {when} (timeout); extend with: bento extend {token} 30m"
        ),
        DeadlineKind::Idle => format!("bento: the session ends in {when} (idle)"),
    }
}

struct Follower {
    exit: Option<ExitInfo>,
    /// `--usage`: say what the function used, after its exit.
    usage: bool,
    /// The session's token, for the hint to extend it.
    token: String,
}

impl Follower {
    /// Runs until the attachment ends; errors are output write errors.
    async fn follow(
        &mut self,
        att: &mut Attachment,
        writer: &Writer,
        sig: &mut tokio::sync::watch::Receiver<Option<i32>>,
    ) -> std::io::Result<AttachEnd> {
        loop {
            if sig.borrow().is_some() {
                return Ok(AttachEnd::Detached);
            }
            let event = match att.try_next() {
                Some(ev) => ev,
                None => {
                    let next = tokio::select! {
                        biased;
                        _ = sig.changed() => continue,
                        ev = att.next() => ev,
                    };
                    match next {
                        Some(ev) => ev,
                        None => {
                            let gone = "the attachment ended without saying why";
                            return Ok(AttachEnd::Failed(crate::client::ClientError::Transport(
                                gone.into(),
                            )));
                        }
                    }
                }
            };
            match event {
                // The writer reports each frame as written once it is, so
                // the attachment acks only output that really left this
                // process.
                Event::Output(frame) => writer.write(frame).await?,
                Event::Exit { seq, exit } => {
                    self.exit = Some(exit);
                    writer.mark(seq).await?;
                }
                Event::Reconnecting { attempt, cause, .. } => {
                    tracing::debug!(attempt, %cause, "reconnecting");
                    if attempt == 1 {
                        writer.flush().await?;
                        say(&format!("bento: connection lost ({cause}), reconnecting…"));
                    }
                }
                Event::Reconnected { .. } => {}
                Event::Deadline {
                    reason, in_secs, ..
                } => {
                    // After what came before it, as it came.
                    writer.flush().await?;
                    say(&deadline_line(&self.token, reason, in_secs));
                }
                Event::Ended(end) => return Ok(end),
            }
        }
    }

    /// Prints why the attachment ended (if it needs saying) and picks the exit code.
    fn finish(&self, end: AttachEnd, client: &Client, token: &str) -> i32 {
        if let Some(exit) = &self.exit {
            // Everything was written out; how the socket ended after that
            // does not change what the function did.
            if !exit.reason.is_success() && !matches!(exit.reason, ExitReason::Exited { .. }) {
                say(&format!("bento: function {}", exit.message));
            }
            if self.usage {
                match &exit.usage {
                    Some(u) => say(&super::usage::line(u)),
                    None => say("bento: usage: not measured (the controller took no sample)"),
                }
            }
            return exit.code;
        }
        match end {
            AttachEnd::Finished | AttachEnd::Closed(CloseReason::Finished) => {
                say("bento: the session has finished and its output was already delivered");
                0
            }
            AttachEnd::Detached => {
                say(&format!("detached; {}", reattach_hint(client, token)));
                0
            }
            AttachEnd::Closed(CloseReason::TakenOver) => {
                say("bento: another client took over this session");
                1
            }
            AttachEnd::Closed(CloseReason::ClosedByUser) => {
                say(&format!(
                    "bento: detached by `bento close`; {}",
                    reattach_hint(client, token)
                ));
                1
            }
            AttachEnd::Closed(
                // Final: reattaching cannot help (a revoked key stays so).
                reason @ (CloseReason::SessionGone
                | CloseReason::Protocol { .. }
                | CloseReason::KeyRevoked),
            ) => {
                say(&format!("bento: {reason}"));
                1
            }
            AttachEnd::Closed(reason) => {
                say(&format!(
                    "bento: {reason}; {}",
                    reattach_hint(client, token)
                ));
                1
            }
            AttachEnd::Failed(e) if e.status().is_some() => {
                say(&format!("bento: {e}"));
                if let Some(hint) = super::hints::for_client_error(&e) {
                    say(&format!("hint: {hint}"));
                }
                1
            }
            AttachEnd::Failed(e) => {
                say(&format!("bento: {e}; {}", reattach_hint(client, token)));
                1
            }
        }
    }
}

/// Each stdin line is one input message; end of stdin ends the input.
async fn pump_stdin(input: InputSender) {
    let mut reader = tokio::io::BufReader::new(tokio::io::stdin());
    loop {
        match read_line(&mut reader, MAX_LINE).await {
            Ok(Some(line)) => {
                if input.send(line).await.is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = input.eof().await;
                return;
            }
            Err(e) => {
                // No EOF: the input did not end, reading it failed.
                say(&format!("bento: stopped reading stdin: {e}"));
                return;
            }
        }
    }
}

/// How long after a Ctrl-C a second one stops the function.
const SECOND_CTRL_C: Duration = Duration::from_secs(1);

/// Ctrl-C, SIGTERM and a closed terminal detach; the function keeps
/// running. A second Ctrl-C within [`SECOND_CTRL_C`] kills the function
/// instead, and the attachment stays to show its exit; a third detaches.
fn watch_signals(
    handle: DetachHandle,
    client: Client,
    token: String,
) -> anyhow::Result<tokio::sync::watch::Receiver<Option<i32>>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        let mut killed = false;
        // 128 + signal number, as a shell reports it.
        let code = loop {
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
                _ = hup.recv() => 129,
            };
            if code != 130 || killed {
                break code;
            }
            say("bento: detaching; press Ctrl-C again now to stop the function");
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => break 143,
                _ = hup.recv() => break 129,
                _ = tokio::time::sleep(SECOND_CTRL_C) => break 130,
            }
            if let Err(e) = client.kill_session(&token).await {
                say(&format!("bento: cannot stop the function: {e}"));
                break 130;
            }
            say("bento: stopping the function (Ctrl-C again detaches)");
            killed = true;
        };
        let _ = tx.send(Some(code));
        // The follower stops, acks what it wrote and detaches; if it is
        // stuck writing, leave anyway.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), handle.detach()).await;
        say(&format!("detached; {}", reattach_hint(&client, &token)));
        std::process::exit(code);
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::hints::UrlOrigin;

    #[test]
    fn the_reattach_command_carries_a_url_given_as_a_flag() -> anyhow::Result<()> {
        let client = Client::new("10.0.0.5:7470", None)?;
        let t = "ab".repeat(32);
        assert_eq!(
            reattach_command(&client, &t, Some(UrlOrigin::Flag)),
            format!("bento attach {t} --url http://10.0.0.5:7470")
        );
        for origin in [Some(UrlOrigin::Env), Some(UrlOrigin::Default), None] {
            assert_eq!(
                reattach_command(&client, &t, origin),
                format!("bento attach {t}")
            );
        }
        Ok(())
    }

    #[test]
    fn the_deadline_line_says_when_why_and_how_to_extend() {
        assert_eq!(
            deadline_line("t0k", DeadlineKind::Timeout, 90),
            "bento: the session ends in 1m30s (timeout); extend with: bento extend t0k 30m"
        );
        assert_eq!(
            deadline_line("t0k", DeadlineKind::Idle, 30),
            "bento: the session ends in 30s (idle)"
        );
    }
}
