//! Talking to a controller through the client library: submit, create,
//! wait for a session, and read an attachment to its end.

use std::time::{Duration, Instant};

use bento::client::{AttachEnd, AttachOptions, Attachment, Client, Event};
use bento::wire::api::{CreateSession, ExitInfo, SessionInfo, Stream, SubmitFunction};

use super::{Ctx, Res};

/// A client of the controller at `url`, without an API key.
pub fn client(url: &str) -> Client {
    Client::new(url, None).unwrap_or_else(|e| panic!("client: {e}"))
}

/// Submits `code` (no name, the default image); its function id.
pub async fn try_submit(client: &Client, code: &str) -> Res<String> {
    let body = SubmitFunction {
        code: code.into(),
        name: None,
        image: None,
        filename: None,
    };
    client
        .submit_function(&body)
        .await
        .map(|f| f.id)
        .ctx("submit")
}

/// [`try_submit`], or a test failure.
pub async fn submit(client: &Client, code: &str) -> String {
    try_submit(client, code)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates a session of `function` with `args` (default limits, not
/// transient); its (token, id).
pub async fn try_create(client: &Client, function: &str, args: &[&str]) -> Res<(String, String)> {
    let body = CreateSession {
        function: function.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        transient: false,
        limits: Default::default(),
        forkable: None,
        env: Default::default(),
        secrets: Vec::new(),
    };
    client
        .create_session(&body)
        .await
        .map(|s| (s.token, s.id))
        .ctx("create session")
}

/// [`try_create`], or a test failure; the token.
pub async fn create(client: &Client, function: &str, args: &[&str]) -> String {
    try_create(client, function, args)
        .await
        .map(|(token, _)| token)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls the session until `pred` holds, for at most `within`. An unknown
/// token ends the wait at once; other errors (a controller restarting) are
/// waited out, and the last one is told if time runs out.
pub async fn wait_session(
    client: &Client,
    token: &str,
    what: &str,
    within: Duration,
    pred: impl Fn(&SessionInfo) -> bool,
) -> Res<SessionInfo> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        match client.session(token).await {
            Ok(info) if pred(&info) => return Ok(info),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Err(format!("waiting for {what}: {e}")),
            Err(e) => last = format!(" (last error: {e})"),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {within:?} waiting for {what}{last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the session is reaped (its token unknown), for at most
/// `within`.
pub async fn wait_reaped(client: &Client, token: &str, within: Duration) -> Res<()> {
    let deadline = Instant::now() + within;
    loop {
        match client.session(token).await {
            Err(e) if e.is_not_found() => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!("session was not reaped within {within:?}"))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Attaches after `after` with the default options.
pub async fn try_attach(client: &Client, token: &str, after: u64) -> Res<Attachment> {
    let opts = AttachOptions {
        after,
        ..AttachOptions::default()
    };
    client.attach(token, opts).await.ctx("attach")
}

/// Everything one attachment received.
#[derive(Debug, Default)]
pub struct Received {
    /// Whole data messages, reassembled from their chunks.
    pub data: Vec<Vec<u8>>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<ExitInfo>,
    pub end: Option<AttachEnd>,
    pub last_seq: u64,
}

impl Received {
    pub fn data_strings(&self) -> Vec<String> {
        self.data
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }
}

/// Reads events until the attachment ends or `stop` says so after a data
/// message; acks everything it reads.
pub async fn receive(att: &mut Attachment, mut stop: impl FnMut(&Received) -> bool) -> Received {
    let mut r = Received::default();
    let mut partial: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ev = match tokio::time::timeout_at(deadline, att.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return r,
            Err(_) => panic!("timed out receiving; so far: {:?}", r.data_strings()),
        };
        match ev {
            Event::Output(f) => {
                assert!(f.seq > r.last_seq, "seq {} after {}", f.seq, r.last_seq);
                r.last_seq = f.seq;
                match f.stream {
                    Stream::Data => {
                        partial.extend_from_slice(&f.bytes);
                        if f.end {
                            r.data.push(std::mem::take(&mut partial));
                        }
                    }
                    Stream::Stdout => r.stdout.extend_from_slice(&f.bytes),
                    Stream::Stderr => r.stderr.extend_from_slice(&f.bytes),
                }
                att.written(f.seq);
                if f.stream == Stream::Data && f.end && stop(&r) {
                    return r;
                }
            }
            Event::Exit { seq, exit } => {
                r.last_seq = seq;
                r.exit = Some(exit);
                att.written(seq);
            }
            Event::Ended(end) => {
                r.end = Some(end);
                return r;
            }
            _ => {}
        }
    }
}
