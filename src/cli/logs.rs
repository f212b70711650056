//! `bento logs TOKEN [-f]`: a read-only look at the output a session still
//! holds. It pages through `GET /v1/sessions/{token}/output`, so it never
//! acknowledges anything and never takes the session over from an
//! attached client; any number may run at once.

use super::io::Output;
use super::{say, LogsArgs};
use crate::client::{Client, ClientError};
use crate::wire::api::{ExitInfo, OutputFrame, OutputPage};
use anyhow::Context;
use std::time::Duration;
use tokio::io::{AsyncWrite, BufWriter};

/// How often `--follow` asks for more once it has caught up.
const POLL: Duration = Duration::from_millis(200);

pub(super) async fn logs(args: LogsArgs) -> anyhow::Result<i32> {
    let client = args.server.client()?;
    let token = super::resolve::token(&client, &args.token).await?;
    let stdout = BufWriter::with_capacity(64 << 10, tokio::io::stdout());
    let mut output = Output::new(stdout, tokio::io::stderr(), args.raw);
    let mut source = HttpPages {
        client: &client,
        token: &token,
    };
    let end = watch(&mut source, &mut output, args.follow, POLL).await?;
    match end {
        WatchEnd::Exit(exit) => say(&format!("bento: function {}", exit.message)),
        WatchEnd::CaughtUp => {}
        WatchEnd::Gone => say(
            "bento: the session is gone: its output was delivered to an attached client \
             and it was removed",
        ),
    }
    Ok(0)
}

/// Where pages come from: the server, or a script in tests.
pub(super) trait Pages {
    async fn page(&mut self, after: u64) -> Result<OutputPage, ClientError>;
}

struct HttpPages<'a> {
    client: &'a Client,
    token: &'a str,
}

impl Pages for HttpPages<'_> {
    async fn page(&mut self, after: u64) -> Result<OutputPage, ClientError> {
        self.client.output_page(self.token, after).await
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum WatchEnd {
    /// The session's exit was reached (and everything before it written).
    Exit(ExitInfo),
    /// Without `--follow`: everything held was written.
    CaughtUp,
    /// With `--follow`: the session disappeared before its exit was seen
    /// (an attached client took the rest and it was reaped).
    Gone,
}

/// Writes pages until the held output is exhausted (or, when `follow`,
/// until the exit). An unknown session on the first request is an error;
/// later it means the session was reaped while we watched.
pub(super) async fn watch<P, O, E>(
    pages: &mut P,
    output: &mut Output<O, E>,
    follow: bool,
    poll: Duration,
) -> anyhow::Result<WatchEnd>
where
    P: Pages,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut after = 0;
    let mut first = true;
    loop {
        let page = match pages.page(after).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() && !first => {
                output.flush().await.context("cannot write output")?;
                return Ok(WatchEnd::Gone);
            }
            Err(e) => return Err(e.into()),
        };
        first = false;
        if !page.complete && page.messages.is_empty() && page.exit.is_none() {
            // A page that neither ends nor moves on would be asked for forever.
            anyhow::bail!("the server cannot read this session's output (after seq {after})");
        }
        for m in page.messages {
            let frame = OutputFrame {
                seq: m.seq,
                stream: m.stream,
                end: m.end,
                bytes: m.text.into(),
            };
            output.write(&frame).await.context("cannot write output")?;
        }
        after = after.max(page.next_after);
        if let Some(exit) = page.exit {
            output.flush().await.context("cannot write output")?;
            return Ok(WatchEnd::Exit(exit));
        }
        if !page.complete {
            continue;
        }
        output.flush().await.context("cannot write output")?;
        if !follow {
            return Ok(WatchEnd::CaughtUp);
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
