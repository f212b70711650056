//! The controller's own attach over the engine's Unix socket
//! (`src/runtime/attach/`) against bollard's, on one real container: both
//! attach before it starts, and must read the same bytes on each stream.

mod kit;

use std::collections::HashMap;
use std::time::Duration;

use bento::runtime::{ContainerIo, ContainerSpec, DockerRuntime, OutputChunk, Runtime};
use bento::wire::driver::{self, Decoder, Kind, Start, ToDriver};
use futures_util::StreamExt;

/// The function's messages: sizes across the engine's 32 KiB pieces and
/// the driver's frame boundaries, each filled with its own byte.
const CODE: &str = "\
import os
def main():
    for i in range(300):
        send(bytes([i % 251]) * ((i * 7919) % 40000 + 1))
    os.write(2, b'raw stderr\\n')
";

fn expected_data() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..300usize {
        out.extend(std::iter::repeat_n((i % 251) as u8, (i * 7919) % 40000 + 1));
    }
    out
}

/// Reads a stream to its end: (stdout, stderr).
async fn read_all(io: ContainerIo) -> (Vec<u8>, Vec<u8>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut output = io.output;
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(OutputChunk::Stdout(b)) => stdout.extend_from_slice(&b),
            Ok(OutputChunk::Stderr(b)) => stderr.extend_from_slice(&b),
            Err(e) => panic!("attach stream: {e}"),
        }
    }
    (stdout, stderr)
}

/// The payloads of the driver's DATA frames in `stdout`, joined.
fn data_of(stdout: &[u8]) -> Vec<u8> {
    let mut d = Decoder::new();
    d.feed(bytes::Bytes::copy_from_slice(stdout));
    let mut data = Vec::new();
    loop {
        match d.next_frame() {
            Ok(Some(f)) if f.kind == Kind::Data => data.extend_from_slice(&f.payload),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("bad frame in the attach stream: {e}"),
        }
    }
    data
}

#[tokio::test]
async fn the_socket_attach_reads_the_same_bytes_as_bollard() {
    kit::ensure_image().await;
    let config = kit::repo_config();
    let image = config
        .images
        .get("python")
        .unwrap_or_else(|| panic!("no python image"));
    let ours = DockerRuntime::connect(None)
        .await
        .unwrap_or_else(|e| panic!("docker: {e}"));
    assert!(
        ours.attach_socket().is_some(),
        "DOCKER_HOST is not a unix:// socket: both sides would be bollard's"
    );
    let bollard = ours.clone().with_bollard_attach();
    assert!(bollard.attach_socket().is_none());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let spec = ContainerSpec::for_image(
        image,
        format!("bento-test-attach-{run}"),
        HashMap::from([("bento-test.attach".to_string(), run.clone())]),
        image.limits.clone(),
    );
    let id = ours
        .create(&spec)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));

    let result = async {
        let mut fast = ours.attach(&id).await.map_err(|e| e.to_string())?;
        let slow = bollard.attach(&id).await.map_err(|e| e.to_string())?;
        ours.start(&id).await.map_err(|e| e.to_string())?;
        let start = ToDriver::Start(Start::new(CODE, &[], "function.py"));
        driver::write(&mut fast.input, &start)
            .await
            .map_err(|e| e.to_string())?;
        // The driver waits for acks that never come once the function is
        // done: read until all of its output is there, then kill it, which
        // ends both streams.
        let want = expected_data();
        let (fast_tx, fast_rx) = tokio::sync::oneshot::channel();
        let want_len = want.len();
        let reader = tokio::spawn(async move {
            let _input = fast.input;
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let mut output = fast.output;
            let mut frames = Decoder::new();
            let mut data = 0;
            let mut done = Some(fast_tx);
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(OutputChunk::Stdout(b)) => {
                        stdout.extend_from_slice(&b);
                        frames.feed(b);
                        loop {
                            match frames.next_frame() {
                                Ok(Some(f)) if f.kind == Kind::Data => data += f.payload.len(),
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => panic!("bad frame in the attach stream: {e}"),
                            }
                        }
                    }
                    Ok(OutputChunk::Stderr(b)) => stderr.extend_from_slice(&b),
                    Err(e) => panic!("attach stream: {e}"),
                }
                // stdout and stderr are separate pipes: either may come last.
                if data >= want_len && stderr.ends_with(b"raw stderr\n") {
                    if let Some(tx) = done.take() {
                        let _ = tx.send(());
                    }
                }
            }
            (stdout, stderr)
        });
        let slow_reader = tokio::spawn(read_all(ContainerIo {
            output: slow.output,
            input: slow.input,
        }));
        tokio::time::timeout(Duration::from_secs(120), fast_rx)
            .await
            .map_err(|_| "the function's output did not arrive".to_string())?
            .map_err(|_| "the reader ended early".to_string())?;
        ours.kill(&id).await.map_err(|e| e.to_string())?;
        // Killed, the container's streams end.
        let ended = |what: &'static str| move |_| format!("{what} did not end after the kill");
        let fast = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .map_err(ended("our attach stream"))?
            .map_err(|e| e.to_string())?;
        let slow = tokio::time::timeout(Duration::from_secs(60), slow_reader)
            .await
            .map_err(ended("bollard's attach stream"))?
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((fast, slow, want))
    }
    .await;
    let _ = ours.remove(&id).await;
    let ((fast_out, fast_err), (slow_out, slow_err), want) =
        result.unwrap_or_else(|e| panic!("{e}"));

    let data = data_of(&fast_out);
    assert_eq!(data.len(), want.len(), "data bytes through our attach");
    assert!(data == want, "our attach garbled the function's data");
    assert_eq!(fast_err, b"raw stderr\n");
    assert!(
        fast_out == slow_out,
        "stdout differs: ours {} bytes, bollard's {}",
        fast_out.len(),
        slow_out.len()
    );
    assert_eq!(fast_err, slow_err);
}
