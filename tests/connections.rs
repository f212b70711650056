//! Client connections against a controller with few open files: idle
//! connections must not starve it. Each test runs `bento serve` in a child
//! process whose open-file limit is set low before it starts.

mod kit;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bento::client::{AttachOptions, Attachment, Client, Event};
use bento::wire::api::Stream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Echoes every input message until end of input.
const ECHO: &str = r#"
def main():
    while True:
        m = recv()
        if m is None:
            return
        send(m)
"#;

/// `bento serve` in a child process, its JSON log lines read as they come.
struct Serve {
    child: Child,
    addr: SocketAddr,
    prefix: String,
    /// Every log line so far, parsed.
    lines: Vec<serde_json::Value>,
    rx: mpsc::UnboundedReceiver<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts the controller with `nofile` (soft, hard) and `extra` config,
    /// and waits until it listens.
    async fn start(nofile: (u64, u64), extra: &str) -> Serve {
        kit::ensure_image().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let repo = kit::repo();
        let prefix = format!(
            "conn{}.bento",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let config = format!(
            "listen: 127.0.0.1:0\ndata_dir: {data}\nimages_dir: {images}\ndriver_dir: {driver}\n\
             label_prefix: {prefix}\n{extra}",
            data = dir.path().join("data").display(),
            images = repo.join("config/images").display(),
            driver = repo.join("driver").display(),
        );
        let path = dir.path().join("bento.yaml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bento"));
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let (soft, hard) = nofile;
        // SAFETY: between fork and exec only setrlimit is called, which is
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bento serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "fields": { "message": line } }));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefix,
            lines: Vec::new(),
            rx,
            _dir: dir,
        };
        let listening = serve
            .wait_log("bento controller listening", Duration::from_secs(60))
            .await;
        serve.addr = field(&listening, "addr")
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {listening}"));
        serve
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next log line whose message starts with `message`.
    async fn wait_log(&mut self, message: &str, within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        if let Some(v) = self.lines.iter().find(|v| msg(v).starts_with(message)) {
            return v.clone();
        }
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) => {
                    self.lines.push(v.clone());
                    if msg(&v).starts_with(message) {
                        return v;
                    }
                }
                Ok(None) => panic!("bento serve ended; its log: {:?}", self.lines),
                Err(_) => panic!("no log line {message:?} in {within:?}: {:?}", self.lines),
            }
        }
    }

    /// Every line logged so far.
    fn drain_log(&mut self) -> &[serde_json::Value] {
        while let Ok(v) = self.rx.try_recv() {
            self.lines.push(v);
        }
        &self.lines
    }

    /// SIGTERM, then waits for a graceful exit.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: a signal to our own child, by its pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("bento serve did not stop within 30 s of SIGTERM"))
            .unwrap_or_else(|e| panic!("wait: {e}"));
        assert!(status.success(), "bento serve exited with {status}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Whatever the test left under this controller's labels.
        for kind in ["session", "pool"] {
            let ids = std::process::Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label={}.{kind}", self.prefix))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &v["fields"][name]
}

fn msg(v: &serde_json::Value) -> &str {
    field(v, "message").as_str().unwrap_or("")
}

/// How an idle connection ended: what the server sent, and when it closed.
struct Ended {
    bytes: Vec<u8>,
    after: Duration,
}

/// Opens `n` connections that never send a byte.
async fn open_idle(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect timed out"))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        idle.push((s, Instant::now()));
    }
    idle
}

/// Reads each connection until the server closes it (by `within`), like a
/// client would: a refused one is dropped once its answer is in.
fn await_close(idle: Vec<(TcpStream, Instant)>, within: Duration) -> tokio::task::JoinSet<Ended> {
    let mut set = tokio::task::JoinSet::new();
    for (mut s, opened) in idle {
        set.spawn(async move {
            let mut bytes = Vec::new();
            match tokio::time::timeout(within, s.read_to_end(&mut bytes)).await {
                Ok(Ok(_)) => {}
                // A reset is a close too (the server dropped it unanswered).
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(Err(e)) => panic!("reading an idle connection: {e}"),
                Err(_) => panic!("an idle connection was still open after {within:?}"),
            }
            Ended {
                bytes,
                after: opened.elapsed(),
            }
        });
    }
    set
}

/// `GET /healthz` on a connection of its own; the whole answer, or `None`
/// when the server closed without one.
async fn healthz(addr: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: bento\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(a)) if !a.is_empty() => Some(String::from_utf8_lossy(&a).into_owned()),
        Ok(_) => None,
        Err(_) => panic!("/healthz did not answer within 10 s"),
    }
}

/// The next whole data message on `att`; the attachment must not drop.
async fn next_message(att: &mut Attachment) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), att.next())
            .await
            .unwrap_or_else(|_| panic!("no echo within 30 s"));
        match ev {
            Some(Event::Output(f)) => {
                att.written(f.seq);
                if f.stream == Stream::Data {
                    data.extend_from_slice(&f.bytes);
                    if f.end {
                        return data;
                    }
                }
            }
            Some(Event::Exit { seq, .. }) => att.written(seq),
            other => panic!("the attachment did not stay up: {other:?}"),
        }
    }
}

async fn echo(att: &mut Attachment, line: &str) {
    att.input()
        .send(line.to_string())
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(next_message(att).await, line.as_bytes());
}

/// The issue's proof: with a low open-file limit, 300 connections that
/// never send a request, while a function runs and a client is attached to
/// it. The controller keeps to its cap (answering 503 beyond it), closes the
/// idle ones after the header timeout, answers /healthz again once they are
/// gone, and the attached session's echo works throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_controller() {
    const IDLE: usize = 300;
    let header_timeout = Duration::from_secs(3);
    let mut serve = Serve::start((128, 256), "max_sessions: 4\nheader_timeout: 3s\n").await;
    let raised = serve
        .wait_log("raised the open-file limit", Duration::from_secs(1))
        .await;
    assert_eq!(
        (
            field(&raised, "before").as_u64(),
            field(&raised, "after").as_u64()
        ),
        (Some(128), Some(256)),
        "bento serve raises the soft limit to the hard one"
    );
    let listening = serve
        .wait_log("bento controller listening", Duration::from_secs(1))
        .await;
    let cap = bento::controller::nofile::default_max_connections(256, 4);
    assert_eq!(
        field(&listening, "max_connections").as_u64(),
        Some(cap as u64)
    );
    assert!(cap < IDLE, "the test must go over the cap ({cap})");

    let client = Client::new(&serve.url(), None).unwrap_or_else(|e| panic!("client: {e}"));
    let function = client
        .submit_function(&bento::wire::api::SubmitFunction {
            code: ECHO.into(),
            name: None,
            image: None,
            filename: None,
        })
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"));
    let session = client
        .create_session(&bento::wire::api::CreateSession {
            function: function.id,
            args: vec![],
            transient: false,
            limits: Default::default(),
            forkable: None,
            env: Default::default(),
            secrets: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("create session: {e}"));
    let opts = AttachOptions {
        // A dropped attachment must fail the test, not be quietly redone.
        reconnect: false,
        ..AttachOptions::default()
    };
    let mut att = client
        .attach(&session.token, opts)
        .await
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let attached_at = Instant::now();
    echo(&mut att, "before").await;

    let flood = Instant::now();
    let idle = open_idle(serve.addr, IDLE).await;
    let closing = await_close(idle, header_timeout + Duration::from_secs(15));
    eprintln!("{IDLE} idle connections opened in {:?}", flood.elapsed());

    // The cap is full of idle connections: the session is still served...
    echo(&mut att, "during").await;
    // ...and a new connection is told so at once. (One the server could not
    // even answer, because too many refusals were in flight, is tried again.)
    let busy = loop {
        if let Some(answer) = healthz(serve.addr).await {
            break answer;
        }
    };
    assert!(
        busy.starts_with("HTTP/1.1 503")
            && busy.ends_with("too many connections to the server; try again\n"),
        "while over the cap: {busy:?}"
    );

    let ended = closing.join_all().await;
    let closed_after = flood.elapsed();
    let refused = ended
        .iter()
        .filter(|e| e.bytes.starts_with(b"HTTP/1.1 503 "))
        .count();
    let timed_out: Vec<&Ended> = ended
        .iter()
        .filter(|e| e.bytes.is_empty() && e.after >= header_timeout)
        .collect();
    let dropped = ended
        .iter()
        .filter(|e| e.bytes.is_empty() && e.after < header_timeout)
        .count();
    eprintln!(
        "cap {cap}: {} held until the header timeout, {refused} answered 503, {dropped} closed \
         unanswered; all closed {closed_after:?} after the flood began",
        timed_out.len()
    );
    assert_eq!(timed_out.len() + refused + dropped, IDLE, "nothing else");
    assert!(refused > 0, "connections over the cap are answered 503");
    assert!(
        !timed_out.is_empty(),
        "connections under the cap are served"
    );
    // The attachment holds a place too.
    assert!(timed_out.len() < cap, "{} held, cap {cap}", timed_out.len());

    // The idle ones are gone: the controller answers again.
    let ok = healthz(serve.addr)
        .await
        .unwrap_or_else(|| panic!("/healthz closed without an answer"));
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "after the idle ones closed: {ok:?}"
    );
    // The attachment outlived the header timeout: it is not subject to it.
    echo(&mut att, "after").await;
    assert!(attached_at.elapsed() > header_timeout);
    att.detach().await;
    serve.stop().await;
}

/// Past the open-file limit `accept` fails (EMFILE). The loop pauses and
/// goes on, rather than ending or spinning; once idle connections time out
/// the queued ones are taken and the controller answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_files_does_not_stop_the_accept_loop() {
    const IDLE: usize = 100;
    // A cap above the limit, so that accept itself runs out.
    let mut serve = Serve::start((64, 64), "max_connections: 1000\nheader_timeout: 1s\n").await;
    let flood = Instant::now();
    let idle = open_idle(serve.addr, IDLE).await;
    let closing = await_close(idle, Duration::from_secs(30));
    let warned = serve
        .wait_log("cannot accept a connection", Duration::from_secs(10))
        .await;
    let error = field(&warned, "error").as_str().unwrap_or("");
    assert!(error.contains("Too many open files"), "{warned}");
    let ended = closing.join_all().await;
    // Each was taken when a descriptor was free and closed after the
    // header timeout; none was answered (none sent a request).
    assert!(ended.iter().all(|e| e.bytes.is_empty()));
    let ok = healthz(serve.addr)
        .await
        .unwrap_or_else(|| panic!("/healthz closed without an answer"));
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "after the idle ones closed: {ok:?}"
    );
    let elapsed = flood.elapsed();
    let warnings = serve
        .drain_log()
        .iter()
        .filter(|v| msg(v) == "cannot accept a connection")
        .count();
    eprintln!(
        "{IDLE} idle connections served and closed in {elapsed:?}; {warnings} accept warnings"
    );
    // A loop that retried at once would fail (and log) thousands of times a
    // second; the pause keeps it to a few per second at most.
    let bound = 10 * (elapsed.as_secs() as usize + 1);
    assert!(
        warnings <= bound,
        "{warnings} accept failures logged in {elapsed:?}"
    );
    serve.stop().await;
}
