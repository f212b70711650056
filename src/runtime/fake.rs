//! An in-memory [`Runtime`] for unit tests of the session logic: the test
//! plays the container, pushing output and reading what was written to stdin.

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
    /// Output senders kept so `kill` can end the stream as a real one would.
    outputs: HashMap<String, mpsc::Sender<OutputChunk>>,
}

#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    created: Arc<Mutex<Vec<FakeContainer>>>,
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

    pub fn removed(&self) -> Vec<String> {
        self.lock().removed.clone()
    }

    pub fn killed(&self) -> Vec<String> {
        self.lock().killed.clone()
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
    async fn create(&self, _spec: &ContainerSpec) -> Result<String> {
        let mut s = self.lock();
        s.next += 1;
        let id = format!("fake{:08}", s.next);
        s.states.insert(id.clone(), ContainerState::Running);
        Ok(id)
    }

    async fn attach(&self, id: &str) -> Result<ContainerIo> {
        let (tx, rx) = mpsc::channel(16);
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        self.lock().outputs.insert(id.to_string(), tx);
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FakeContainer {
                id: id.to_string(),
                stdin: theirs,
            });
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

    async fn remove(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.removed.push(id.to_string());
        s.states.remove(id);
        Ok(())
    }

    async fn list(&self, _label: &str) -> Result<Vec<ListedContainer>> {
        Ok(vec![])
    }

    async fn image_exists(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }
}

/// A driver frame, for tests that play the container.
pub fn frame(kind: crate::wire::driver::Kind, end: bool, payload: &[u8]) -> OutputChunk {
    OutputChunk::Stdout(Bytes::from(
        crate::wire::driver::encode(kind, end, payload).to_vec(),
    ))
}
