//! The gate: what a Swarm task runs before the image's own entrypoint.
//!
//! A node's agent starts a task's container as soon as it creates it, so
//! Swarm has no "created, not started" state to attach and check the
//! sandbox in, as the Docker engine has. The gate gives it one: the
//! container's command is a few lines of Python (every Bento image has
//! python3) that
//!
//! 1. wait for one byte, [`GATE_BYTE`], on stdin, which the controller
//!    writes on its attach stream in `start`, after it has attached and has
//!    checked and fixed the container on its node (`sandbox.rs`): nothing
//!    of the image has run yet, and nothing it writes can be missed;
//! 2. set `no_new_privs` on themselves (a service spec cannot: API 1.41
//!    drops `Privileges.NoNewPrivileges` without a word), which is
//!    inherited and cannot be undone;
//! 3. check from inside what the controller checked from outside, and what
//!    it cannot see: `no_new_privs` set, no capability left, not root, and
//!    for `network: none` no interface but `lo`;
//! 4. exec the image's entrypoint, which reads the rest of stdin.
//!
//! If any step fails it writes `bento sandbox: ...` on stderr and exits
//! with [`GATE_FAILED`]: the function never runs unsandboxed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// The byte that opens the gate.
pub(super) const GATE_BYTE: u8 = 0x06;

/// The gate's exit status when the sandbox does not hold.
pub const GATE_FAILED: i64 = 125;

/// The gate (see the module's doc). `sys.argv[1]` is `none` when the
/// container must have no network, `sys.argv[2:]` the image's entrypoint.
const SCRIPT: &str = r#"import os, sys
def fail(m):
    try:
        os.write(2, ("bento sandbox: %s; the function was not run\n" % m).encode())
    finally:
        os._exit(125)
b = os.read(0, 1)
if b != b"\x06":
    fail("stdin said %r before the controller opened the gate" % b if b else "stdin closed before the gate opened")
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:
        fail("prctl(PR_SET_NO_NEW_PRIVS) failed with errno %d" % ctypes.get_errno())
except Exception as e:
    fail("cannot set no_new_privs: %r" % (e,))
st = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        st[k] = v.strip()
if st.get("NoNewPrivs") != "1":
    fail("no_new_privs is not set")
for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
    v = st.get(k, "0" if k == "CapAmb" else "")
    if not v or int(v, 16) != 0:
        fail("%s is %r, not 0" % (k, v))
if os.getuid() == 0 or os.geteuid() == 0:
    fail("it runs as root")
if sys.argv[1] == "none":
    nets = sorted(os.listdir("/sys/class/net"))
    if nets != ["lo"]:
        fail("network interfaces besides lo: %s" % " ".join(nets))
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except Exception as e:
    fail("cannot run the image's entrypoint %r: %r" % (sys.argv[2:], e))
"#;

/// The task's command: the gate, then `entrypoint`.
pub(super) fn command(no_network: bool, entrypoint: &[String]) -> Vec<String> {
    let mut cmd: Vec<String> = ["python3", "-I", "-S", "-B", "-c", SCRIPT]
        .iter()
        .map(|s| s.to_string())
        .collect();
    cmd.push(if no_network { "none" } else { "any" }.into());
    cmd.extend(entrypoint.iter().cloned());
    cmd
}

type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A container's stdin that both the session (through [`Gated`]) and the
/// engine's `start` (to open the gate) write to, in that order on one
/// stream: the gate byte is on the wire before anything the session
/// writes.
#[derive(Clone)]
pub(super) struct Shared(Arc<Mutex<Input>>);

impl Shared {
    pub(super) fn new(input: Input) -> Shared {
        Shared(Arc::new(Mutex::new(input)))
    }

    fn with<T>(&self, f: impl FnOnce(Pin<&mut (dyn AsyncWrite + Send)>) -> T) -> T {
        // Each use is one poll; a poisoned lock still holds the stream.
        let mut input = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(input.as_mut())
    }

    /// Writes the gate byte and flushes it.
    pub(super) async fn open(&self) -> io::Result<()> {
        let written =
            std::future::poll_fn(|cx| self.with(|w| w.poll_write(cx, &[GATE_BYTE]))).await?;
        if written != 1 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the container's stdin took nothing",
            ));
        }
        std::future::poll_fn(|cx| self.with(|w| w.poll_flush(cx))).await
    }

    /// The session's end of it.
    pub(super) fn gated(&self) -> Gated {
        Gated(self.clone())
    }
}

/// The session's writer on a [`Shared`] stdin.
pub(super) struct Gated(Shared);

impl AsyncWrite for Gated {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.with(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.with(|w| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.with(|w| w.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_gate_byte_comes_first() -> io::Result<()> {
        let (mut far, near) = tokio::io::duplex(64);
        let shared = Shared::new(Box::pin(near));
        let mut session = shared.gated();
        shared.open().await?;
        session.write_all(b"START").await?;
        session.flush().await?;
        let mut got = [0u8; 6];
        far.read_exact(&mut got).await?;
        assert_eq!(&got, b"\x06START");
        Ok(())
    }

    #[test]
    fn the_command_runs_the_gate_then_the_entrypoint() {
        let entry = vec!["python3".to_string(), "-u".into()];
        let cmd = command(true, &entry);
        assert_eq!(cmd[..5], ["python3", "-I", "-S", "-B", "-c"]);
        assert_eq!(cmd[6..], ["none", "python3", "-u"]);
        assert!(cmd[5].contains(r#"b"\x06""#) && GATE_BYTE == 0x06);
        assert!(cmd[5].contains("os._exit(125)") && GATE_FAILED == 125);
        assert_eq!(command(false, &entry)[6], "any");
    }
}
