//! An in-memory [`Runtime`]: the test plays the container, pushing output
//! and reading what was written to stdin. For the crate's unit tests, and
//! (with the `test-util` feature) for integration tests that run a whole
//! controller without Docker ([`FakeRuntime::with_idle_driver`]).

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

use super::{
    ContainerExit, ContainerIo, ContainerSpec, ContainerState, ListedContainer, OutputChunk,
    Result, Runtime,
};

/// The test's end of one fake container.
pub struct FakeContainer {
    pub id: String,
    /// What the controller wrote to the container's stdin.
    pub stdin: DuplexStream,
}

#[derive(Default)]
struct State {
    next: u64,
    states: HashMap<String, ContainerState>,
    removed: Vec<String>,
    killed: Vec<String>,
    /// Warnings sent (container, signal name): the fake container ignores
    /// them, as a function with a handler that goes on would.
    signals: Vec<(String, String)>,
    /// Output senders kept so `kill` can end the stream as a real one would.
    outputs: HashMap<String, mpsc::Sender<OutputChunk>>,
    /// Each container's labels, for `list`.
    labels: HashMap<String, HashMap<String, String>>,
    /// What `usage` answers for a running container (see `set_usage`).
    usage: HashMap<String, super::UsageSample>,
}

#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    created: Arc<Mutex<Vec<FakeContainer>>>,
    /// Containers are played by [`idle_driver`] instead of by the test.
    idle_driver: bool,
}

impl FakeRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the test's end of the most recently attached container.
    pub fn take_container(&self) -> Option<FakeContainer> {
        self.created.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Writes output as the container would.
    pub async fn push(&self, id: &str, chunk: OutputChunk) {
        let tx = self.lock().outputs.get(id).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(chunk).await;
        }
    }

    /// Marks a container as exited with `code`, ending its output stream.
    pub fn exit(&self, id: &str, code: i64, oom_killed: bool) {
        let mut s = self.lock();
        s.states.insert(
            id.to_string(),
            ContainerState::Exited(ContainerExit { code, oom_killed }),
        );
        s.outputs.remove(id);
    }

    /// Sets what the engine's stats say of a container while it runs.
    pub fn set_usage(&self, id: &str, sample: super::UsageSample) {
        self.lock().usage.insert(id.to_string(), sample);
    }

    pub fn removed(&self) -> Vec<String> {
        self.lock().removed.clone()
    }

    pub fn killed(&self) -> Vec<String> {
        self.lock().killed.clone()
    }

    /// The signals sent so far with [`Runtime::signal`], in order.
    pub fn signals(&self) -> Vec<(String, String)> {
        self.lock().signals.clone()
    }

    /// A fake whose containers play a driver that does nothing, so that a
    /// whole controller runs on it without a test playing each container:
    /// a syntax check is answered "it compiles"; a session's container reads
    /// and drops what it is sent, writes nothing and runs until it is
    /// killed. [`FakeRuntime::take_container`] finds none of them.
    pub fn with_idle_driver() -> FakeRuntime {
        FakeRuntime {
            idle_driver: true,
            ..FakeRuntime::default()
        }
    }

    /// A container that exists before anything here made it (one a
    /// controller made before a restart, say), with `labels` and in
    /// `state`; its id.
    pub fn add_container(&self, labels: HashMap<String, String>, state: ContainerState) -> String {
        let mut s = self.lock();
        s.next += 1;
        let id = format!("fake{:08}", s.next);
        s.states.insert(id.clone(), state);
        s.labels.insert(id.clone(), labels);
        id
    }
}

/// The idle driver of [`FakeRuntime::with_idle_driver`] in one container:
/// reads frames from its stdin until the end; answers a syntax check's
/// START (its container is labelled `PREFIX.check`) with `{"ok": true}`
/// and exits 0 as the real driver does.
async fn idle_driver(fake: FakeRuntime, id: String, check: bool, mut stdin: DuplexStream) {
    use crate::wire::driver::{Header, Kind, HEADER_LEN};
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; HEADER_LEN];
    while stdin.read_exact(&mut header).await.is_ok() {
        let Ok(header) = Header::parse(&header) else {
            return; // the controller only writes good frames
        };
        let mut payload = vec![0u8; header.len];
        if stdin.read_exact(&mut payload).await.is_err() {
            return;
        }
        if check && header.kind == Kind::Start && header.end {
            fake.push(&id, frame(Kind::Data, true, br#"{"ok": true}"#))
                .await;
            fake.exit(&id, 0, false);
            return;
        }
    }
}

/// Enough of `tokio_stream::wrappers::ReceiverStream` for the fake.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    pub struct ReceiverStream<T>(pub mpsc::Receiver<T>);

    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        Ok(self.add_container(spec.labels.clone(), ContainerState::Running))
    }

    async fn attach(&self, id: &str) -> Result<ContainerIo> {
        let (tx, rx) = mpsc::channel(16);
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let check = {
            let mut s = self.lock();
            s.outputs.insert(id.to_string(), tx);
            s.labels
                .get(id)
                .is_some_and(|l| l.keys().any(|k| k.ends_with(".check")))
        };
        if self.idle_driver {
            tokio::spawn(idle_driver(self.clone(), id.to_string(), check, theirs));
        } else {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(FakeContainer {
                    id: id.to_string(),
                    stdin: theirs,
                });
        }
        Ok(ContainerIo {
            output: ReceiverStream(rx).map(Ok).boxed(),
            input: Box::pin(ours),
        })
    }

    async fn start(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        Ok(self
            .lock()
            .states
            .get(id)
            .cloned()
            .unwrap_or(ContainerState::Missing))
    }

    async fn kill(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.killed.push(id.to_string());
        if s.states.get(id) == Some(&ContainerState::Running) {
            s.states.insert(
                id.to_string(),
                ContainerState::Exited(ContainerExit {
                    code: 137,
                    oom_killed: false,
                }),
            );
        }
        s.outputs.remove(id);
        Ok(())
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        self.lock()
            .signals
            .push((id.to_string(), signal.to_string()));
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.removed.push(id.to_string());
        s.states.remove(id);
        s.labels.remove(id);
        Ok(())
    }

    /// As Docker's `label` filter: `key` (any value) or `key=value`.
    async fn list(&self, label: &str) -> Result<Vec<ListedContainer>> {
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (label, None),
        };
        let s = self.lock();
        let mut found: Vec<ListedContainer> = s
            .labels
            .iter()
            .filter(|(_, labels)| {
                labels
                    .get(key)
                    .is_some_and(|v| value.is_none_or(|want| v == want))
            })
            .map(|(id, labels)| ListedContainer {
                id: id.clone(),
                labels: labels.clone(),
                running: s.states.get(id) == Some(&ContainerState::Running),
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn image_exists(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }

    async fn usage(&self, id: &str) -> Result<Option<super::UsageSample>> {
        let s = self.lock();
        // Like the engine: an ended container's cgroup is gone.
        let running = matches!(s.states.get(id), Some(ContainerState::Running) | None);
        Ok(s.usage.get(id).filter(|_| running).cloned())
    }
}

/// A driver frame, for tests that play the container.
pub fn frame(kind: crate::wire::driver::Kind, end: bool, payload: &[u8]) -> OutputChunk {
    OutputChunk::Stdout(Bytes::from(
        crate::wire::driver::encode(kind, end, payload).to_vec(),
    ))
}
