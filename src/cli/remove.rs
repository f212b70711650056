//! `bento kill`, `bento rm` and `bento prune`: stopping functions, and
//! discarding ended sessions with the output nobody read.

use super::resolve::{self, short};
use super::{out, say, ServerArgs};
use crate::client::{Client, ClientError};
use crate::wire::api::{SessionInfo, SessionState};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long `kill` and `rm -f` wait for the engine to report the exit.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// `bento kill`: asks the server to kill the function, then waits until the
/// session reports it ended, so that an `ls` right after shows `ended`,
/// not `running`. Past [`KILL_WAIT`] it says so and returns.
pub(super) async fn kill(given: &str, server: &ServerArgs) -> anyhow::Result<i32> {
    let client = server.client()?;
    let token = resolve::token(&client, given).await?;
    client.kill_session(&token).await?;
    if !wait_ended(&client, &token).await? {
        say(&format!(
            "bento: the kill was sent, but {} has not ended after {}s; see `bento ls`",
            short(&token),
            KILL_WAIT.as_secs()
        ));
    }
    Ok(0)
}

/// Polls the session until it is ended (or gone: an attached client may
/// read its exit and have it reaped at once); `false` past [`KILL_WAIT`].
/// The API has no way to wait for an exit, so this asks, backing off.
async fn wait_ended(client: &Client, token: &str) -> anyhow::Result<bool> {
    let deadline = Instant::now() + KILL_WAIT;
    let mut delay = Duration::from_millis(10);
    loop {
        match client.session(token).await {
            Ok(info) if info.state == SessionState::Ended => return Ok(true),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(true),
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// `bento rm [-f] TOKEN...`: each is tried, like `docker rm`: what was
/// removed is printed as given, failures go to stderr and make the exit
/// code 1. Without `force`, a running session is refused (409).
pub(super) async fn rm(given: &[String], force: bool, server: &ServerArgs) -> anyhow::Result<i32> {
    let client = server.client()?;
    let mut code = 0;
    for g in given {
        match rm_one(&client, g, force).await {
            Ok(()) => out(g)?,
            Err(e) => {
                say(&format!("bento: {g}: {e:#}"));
                let running = e
                    .downcast_ref::<ClientError>()
                    .is_some_and(|c| c.status() == Some(409));
                if running {
                    say("hint: `bento rm -f` kills it first");
                }
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn rm_one(client: &Client, given: &str, force: bool) -> anyhow::Result<()> {
    let token = resolve::token(client, given).await?;
    if force {
        let info = client.session(&token).await?;
        if info.state != SessionState::Ended {
            client.kill_session(&token).await?;
            if !wait_ended(client, &token).await? {
                anyhow::bail!(
                    "killed, but it has not ended after {}s",
                    KILL_WAIT.as_secs()
                );
            }
        }
    }
    match client.remove_session(&token).await {
        // Gone since the kill: its exit was read by an attached client.
        Err(e) if force && e.is_not_found() => Ok(()),
        other => Ok(other?),
    }
}

/// `bento prune [-f]`: removes every ended session nobody is attached to
/// (an attached client is reading it right now). It discards output, so it
/// asks first on a terminal, and insists on `-f` elsewhere.
pub(super) async fn prune(force: bool, server: &ServerArgs) -> anyhow::Result<i32> {
    let client = server.client()?;
    let sessions = client.list_sessions().await?;
    let ended: Vec<&SessionInfo> = sessions.iter().filter(|s| prunable(s)).collect();
    if ended.is_empty() {
        say("no ended sessions to remove");
        return Ok(0);
    }
    if !force {
        let question = format!(
            "Remove {} ended session(s) and discard {} unread message(s)? [y/N] ",
            ended.len(),
            ended.iter().map(|s| s.pending_messages).sum::<u64>()
        );
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("prune discards unread output: pass -f (--force) when not on a terminal");
        }
        if !confirm(&question)? {
            say("nothing removed");
            return Ok(0);
        }
    }
    let mut code = 0;
    for s in ended {
        match client.remove_session(&s.token).await {
            Ok(()) => out(short(&s.token))?,
            // Reaped meanwhile (its output was read): nothing left to do.
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                say(&format!("bento: {}: {e}", short(&s.token)));
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prunable(s: &SessionInfo) -> bool {
    s.state == SessionState::Ended && !s.attached
}

/// Asks on stderr, reads the answer from stdin: yes only for `y` or `yes`.
fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "{question}")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
