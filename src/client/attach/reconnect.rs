//! The task behind an [`Attachment`](super::Attachment): [`run`] serves
//! connections one after another (each by `conn.rs`), and after a lost one
//! reconnects with [`Backoff`] until a new one is up or the attachment is
//! over. Also how the first connection waits out a resuming session
//! ([`connect_when_ready`]).

use super::conn::{self, worth_reconnecting, ConnEnd};
use super::event::{AttachEnd, Event};
use super::link::{Cmd, Link};
use super::ws::{self, Endpoint, Ws};
use crate::client::ClientError;
use std::time::Duration;
use tokio::time::Instant;

/// How long a first attach waits for a session that is resuming after a
/// controller restart (503) before it gives up with the server's answer.
const RESUMING_WAIT: Duration = Duration::from_secs(30);

/// Connects, waiting out a session that is resuming: that takes moments,
/// and a user who attaches right after a restart should not have to retry
/// by hand. Every other answer is final here.
pub(super) async fn connect_when_ready(
    endpoint: &Endpoint,
    after: u64,
) -> Result<(Ws, ws::Hello), ClientError> {
    let until = tokio::time::Instant::now() + RESUMING_WAIT;
    let mut delay = Duration::from_millis(50);
    loop {
        match ws::connect(endpoint, after).await {
            Err(e) if e.status() == Some(503) && tokio::time::Instant::now() + delay < until => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone)]
struct Backoff {
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff { max, next: initial }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Errors on reconnect that another attempt cannot fix.
fn is_final(e: &ClientError) -> bool {
    match e {
        ClientError::Http { status, .. } => *status < 500,
        ClientError::Syntax { .. } => true,
        ClientError::Closed(reason) => !worth_reconnecting(reason),
        ClientError::Protocol(_) | ClientError::InvalidUrl { .. } => true,
        ClientError::Unreachable { .. } | ClientError::Transport(_) => false,
    }
}

/// Serves `first`, and the connections after it, until the attachment is
/// over; then tells the consumer why.
pub(super) async fn run(mut link: Link, endpoint: Endpoint, first: Ws) {
    let mut ws = first;
    let end = loop {
        let cause = match conn::serve(&mut link, ws).await {
            ConnEnd::Over(end) => break end,
            ConnEnd::Lost(cause) => cause,
        };
        tracing::debug!(%cause, "attach connection lost");
        if !link.opts.reconnect {
            break AttachEnd::Failed(ClientError::Transport(cause));
        }
        match reconnect(&mut link, &endpoint, cause).await {
            Ok(next) => ws = next,
            Err(end) => break end,
        }
    };
    link.input.end();
    // Answer detachers before the final event: the consumer may not be
    // reading events while it waits for its detach to complete.
    for reply in link.detach_replies.drain(..) {
        let _ = reply.send(());
    }
    let _ = link.events.send(Event::Ended(end)).await;
}

async fn reconnect(
    link: &mut Link,
    endpoint: &Endpoint,
    mut cause: String,
) -> Result<Ws, AttachEnd> {
    let started = Instant::now();
    let mut backoff = Backoff::new(link.opts.backoff_initial, link.opts.backoff_max);
    let mut attempt = 0u32;
    loop {
        if let Some(limit) = link.opts.give_up_after {
            if started.elapsed() >= limit {
                return Err(AttachEnd::Failed(ClientError::Transport(format!(
                    "gave up reconnecting after {}s: {cause}",
                    limit.as_secs()
                ))));
            }
        }
        attempt = attempt.saturating_add(1);
        let delay = backoff.next_delay();
        let notice = Event::Reconnecting {
            attempt,
            delay,
            cause: cause.clone(),
        };
        if link.events.send(notice).await.is_err() {
            return Err(AttachEnd::Detached);
        }
        let result = tokio::select! {
            cmd = link.cmds.recv() => {
                // Nobody to tell: the server already lost us.
                if let Some(Cmd::Detach(reply)) = cmd {
                    link.detach_replies.push(reply);
                }
                return Err(AttachEnd::Detached);
            }
            r = async {
                tokio::time::sleep(delay).await;
                ws::connect(endpoint, link.last_received).await
            } => r,
        };
        match result {
            Ok((ws, hello)) => {
                if hello.last_seq < link.last_received {
                    // After a controller restart: output we were sent
                    // before it was durable comes again under the same
                    // seqs, and the server skips what we have.
                    tracing::info!(
                        server = hello.last_seq,
                        ours = link.last_received,
                        "the server has not yet recovered all output we received"
                    );
                }
                link.input.resume(hello.input_next);
                if hello.input_closed {
                    link.input.end();
                }
                let back = Event::Reconnected {
                    last_seq: link.last_received,
                };
                if link.events.send(back).await.is_err() {
                    return Err(AttachEnd::Detached);
                }
                return Ok(ws);
            }
            Err(ClientError::Closed(reason)) if !worth_reconnecting(&reason) => {
                return Err(AttachEnd::Closed(reason))
            }
            Err(e) if is_final(&e) => return Err(AttachEnd::Failed(e)),
            Err(e) => cause = e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_to_cap() {
        let mut b = Backoff::new(100 * MS, 500 * MS);
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
    }
}
