//! Hostile functions, in real containers: each is contained, reports the
//! right reason, and the controller keeps serving other sessions.

mod kit;

use std::time::Duration;

use bento::wire::api::LimitsRequest;
use bento::wire::api::{CreateSession, ExitReason, SessionState};
use kit::{receive, TestServer};

const HELLO: &str = "send('still serving')\n";

async fn run_with(s: &TestServer, code: &str, limits: LimitsRequest) -> (String, kit::Received) {
    let f = s.submit(code).await;
    let body = CreateSession {
        function: f,
        args: vec![],
        transient: false,
        limits,
        forkable: None,
        env: Default::default(),
        secrets: Vec::new(),
    };
    let created = match s.client.create_session(&body).await {
        Ok(c) => c,
        Err(e) => panic!("create: {e}"),
    };
    let mut att = s.attach(&created.token, 0).await;
    let r = receive(&mut att, |_| false).await;
    (created.id, r)
}

/// The controller still runs a plain function to completion.
async fn still_serving(s: &TestServer) {
    let (_, r) = run_with(s, HELLO, LimitsRequest::default()).await;
    assert_eq!(r.data_strings(), vec!["still serving"]);
    assert_eq!(r.exit.map(|e| e.code), Some(0));
}

fn reason(r: &kit::Received) -> Option<ExitReason> {
    r.exit.as_ref().map(|e| e.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_hits_the_pids_limit_and_the_timeout() {
    let s = TestServer::start().await;
    let code = r#"
import os, time
send('forking')
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(3600)
        n += 1
    except OSError:
        break
send(f'blocked after {n}')
while True:
    time.sleep(1)
"#;
    let limits = LimitsRequest {
        pids: Some(32),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let (_, r) = run_with(&s, code, limits).await;
    let data = r.data_strings();
    assert_eq!(data.first().map(String::as_str), Some("forking"));
    let n: u32 = data
        .get(1)
        .and_then(|m| m.strip_prefix("blocked after "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(n < 32, "forks must stop below the pids limit, got {data:?}");
    assert_eq!(reason(&r), Some(ExitReason::Timeout));
    assert_eq!(r.exit.map(|e| e.code), Some(124));
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocating_past_the_memory_limit_is_an_oom_kill() {
    let s = TestServer::start().await;
    let code =
        "send('allocating')\nchunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n";
    let limits = LimitsRequest {
        memory: Some(64 << 20),
        ..Default::default()
    };
    let (_, r) = run_with(&s, code, limits).await;
    assert_eq!(r.data_strings(), vec!["allocating"]);
    assert_eq!(
        reason(&r),
        Some(ExitReason::OomKilled),
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_past_the_timeout_is_killed_with_that_reason() {
    let s = TestServer::start().await;
    let limits = LimitsRequest {
        timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let (_, r) = run_with(&s, "import time\nsend('zz')\ntime.sleep(600)\n", limits).await;
    assert_eq!(r.data_strings(), vec!["zz"]);
    assert_eq!(reason(&r), Some(ExitReason::Timeout));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_filesystem_is_read_only_and_tmp_is_small() {
    let s = TestServer::start().await;
    let code = r#"
import os
for path in ['/evil', '/opt/bento/evil', '/etc/evil']:
    try:
        open(path, 'w').write('x')
        send('wrote ' + path)
    except OSError as e:
        send(f'refused {path}: {e.strerror}')
open('/tmp/ok', 'w').write('fine')
send('tmp ok')
try:
    with open('/tmp/big', 'wb') as f:
        for _ in range(200):
            f.write(b'x' * (1 << 20))
    send('tmp unbounded')
except OSError as e:
    send('tmp full: ' + e.strerror)
send(f'uid {os.getuid()}')
"#;
    let (_, r) = run_with(&s, code, LimitsRequest::default()).await;
    let data = r.data_strings();
    for path in ["/evil", "/opt/bento/evil", "/etc/evil"] {
        assert!(
            data.iter()
                .any(|m| m.starts_with(&format!("refused {path}:"))),
            "{path} must not be writable: {data:?}"
        );
    }
    assert!(data.contains(&"tmp ok".to_string()), "{data:?}");
    assert!(data.iter().any(|m| m.starts_with("tmp full")), "{data:?}");
    assert!(data.contains(&"uid 65534".to_string()), "{data:?}");
    assert_eq!(reason(&r), Some(ExitReason::Exited { code: 0 }));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_reaches_the_controller_or_anything_else() {
    let s = TestServer::start().await;
    let port = s
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(7470);
    // The controller's port on loopback, the Docker bridge gateway, and an
    // outside address (never actually reached: there is no route).
    let code = format!(
        r#"
import socket
for host, port in [('127.0.0.1', {port}), ('172.17.0.1', {port}), ('10.255.255.1', 80)]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        send(f'connected {{host}}')
    except OSError as e:
        send(f'blocked {{host}}')
ifaces = sorted(name for _, name in socket.if_nameindex())
send('interfaces ' + ','.join(ifaces))
"#
    );
    let (_, r) = run_with(&s, &code, LimitsRequest::default()).await;
    let data = r.data_strings();
    for host in ["127.0.0.1", "172.17.0.1", "10.255.255.1"] {
        assert!(data.contains(&format!("blocked {host}")), "{data:?}");
    }
    assert!(
        data.contains(&"interfaces lo".to_string()),
        "only loopback: {data:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_on_stdout_end_the_session_with_a_protocol_error() {
    let s = TestServer::start().await;
    // The driver keeps its frame stream on a private descriptor; a hostile
    // function finds it and writes garbage to every descriptor it can.
    let code = r#"
import os
send('before')
for fd in range(3, 64):
    try:
        os.write(fd, b'\xff' * 64)
    except OSError:
        pass
import time
time.sleep(60)
"#;
    let (_, r) = run_with(&s, code, LimitsRequest::default()).await;
    // The driver writes frames from a thread of its own, so the garbage may
    // land before 'before' does; nothing after the garbage is decoded.
    let data = r.data_strings();
    assert!(data.is_empty() || data == ["before"], "{data:?}");
    assert!(
        matches!(reason(&r), Some(ExitReason::ProtocolError { .. })),
        "{:?}",
        r.exit
    );
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_output_while_detached_is_held_back_at_the_cap() {
    let cap = 4u64 << 20;
    let s = TestServer::start_with(|c| c.output_cap = cap).await;
    let f = s
        .submit("i = 0\nwhile True:\n    send(str(i).encode() * 1000)\n    i += 1\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    // Nobody attached: the session fills up to the cap, then stops reading.
    // The cap counts each message's overhead too (ENTRY_OVERHEAD).
    let cost = |i: &bento::wire::api::SessionInfo| {
        i.pending_bytes + i.pending_messages * bento::session::log::ENTRY_OVERHEAD as u64
    };
    let info = s
        .wait_session(&token, "output held at the cap", |i| cost(i) >= cap)
        .await;
    let frame_bound = 1u64 << 20;
    assert!(cost(&info) <= cap + frame_bound, "held {}", cost(&info));
    assert_eq!(
        info.state,
        SessionState::Running,
        "backpressure, not a kill"
    );
    // Everything held is delivered, in order, from the first message on.
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |r| r.data.len() >= 50).await;
    for (i, m) in r.data.iter().enumerate() {
        assert_eq!(m, &i.to_string().repeat(1000).into_bytes(), "message {i}");
    }
    att.detach().await;
    if let Err(e) = s.client.kill_session(&token).await {
        panic!("kill: {e}");
    }
    let info = s
        .wait_session(&token, "killed", |i| i.state == SessionState::Ended)
        .await;
    assert_eq!(info.exit.map(|e| e.reason), Some(ExitReason::Killed));
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cannot_see_other_sessions_code_or_output() {
    let s = TestServer::start().await;
    let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let victim = format!(
        "import time\nopen('/tmp/note', 'w').write('{secret}')\nsend('{secret}')\ntime.sleep(60)\n"
    );
    let f = s.submit(&victim).await;
    let (victim_token, _) = s.session(&f, &[]).await;
    s.wait_session(&victim_token, "victim produced output", |i| {
        i.pending_messages > 0
    })
    .await;

    let thief = format!(
        r#"
import os, stat
found = []
def check(p):
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            return
        with open(p, 'rb') as fh:
            if b'{secret}' in fh.read(1 << 20):
                found.append(p)
    except OSError:
        pass
for top in ['/tmp', '/opt', '/var', '/srv', '/home', '/root', '/data', '/mnt', '/run']:
    for root, dirs, files in os.walk(top, onerror=lambda e: None):
        for name in files:
            check(os.path.join(root, name))
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for f in ('cmdline', 'environ'):
            check(f'/proc/{{pid}}/{{f}}')
send('found ' + ','.join(found) if found else 'nothing')
send('env ' + ','.join(k for k in os.environ if 'BENTO' in k.upper() or 'TOKEN' in k.upper()))
"#
    );
    let (_, r) = run_with(&s, &thief, LimitsRequest::default()).await;
    assert_eq!(
        r.data_strings(),
        vec!["nothing".to_string(), "env ".to_string()]
    );
    if let Err(e) = s.client.kill_session(&victim_token).await {
        panic!("kill: {e}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_shm_is_bounded_at_the_configured_size_and_noexec() {
    // 16m rather than the default 64m, which is also the engine's own
    // default: the size seen must be the image's setting.
    let s = TestServer::start_with(|c| {
        if let Some(image) = c.images.get_mut("python") {
            image.sandbox.shm_size = "16m".into();
        }
    })
    .await;
    let code = r#"
import os
st = os.statvfs('/dev/shm')
send(f'size {st.f_blocks * st.f_frsize}')
opts = [line.split()[3] for line in open('/proc/mounts') if line.split()[1] == '/dev/shm']
send('options ' + ','.join(opts))
try:
    with open('/dev/shm/big', 'wb') as f:
        for _ in range(32):
            f.write(b'x' * (1 << 20))
    send('shm unbounded')
except OSError as e:
    send('shm full: ' + e.strerror)
"#;
    let (_, r) = run_with(&s, code, LimitsRequest::default()).await;
    let data = r.data_strings();
    assert_eq!(
        data.first(),
        Some(&format!("size {}", 16 << 20)),
        "{data:?}"
    );
    let options = data.get(1).cloned().unwrap_or_default();
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(options.split(',').any(|o| o == opt), "{opt}: {options}");
    }
    assert_eq!(
        data.get(2).map(String::as_str),
        Some("shm full: No space left on device"),
        "{data:?}"
    );
    s.stop().await;
}
