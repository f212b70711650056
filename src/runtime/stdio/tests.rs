use super::demux::demux;
use super::*;
use crate::runtime::OutputChunk;
use bytes::Bytes;
use futures_util::StreamExt;

/// A `stdcopy` stream from (stream type, payload) pairs.
fn muxed(parts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (stream, payload) in parts {
        out.extend_from_slice(&[*stream, 0, 0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Demultiplexes `wire` through a pipe that holds at most `piece`
/// bytes, so that no read returns more than that: with `piece` under
/// 8, every header is split across reads.
async fn run(wire: Vec<u8>, piece: usize) -> (Vec<u8>, Vec<u8>, Option<String>) {
    let (ours, mut engine) = tokio::io::duplex(piece);
    let writer = tokio::spawn(async move {
        engine.write_all(&wire).await.expect("write");
    });
    let mut out = demux(ours, BytesMut::new());
    let (mut stdout, mut stderr, mut error) = (Vec::new(), Vec::new(), None);
    while let Some(chunk) = out.next().await {
        match chunk {
            Ok(OutputChunk::Stdout(b)) => stdout.extend_from_slice(&b),
            Ok(OutputChunk::Stderr(b)) => stderr.extend_from_slice(&b),
            Err(e) => error = Some(e.to_string()),
        }
    }
    // Fused: the end stays the end.
    assert!(out.next().await.is_none());
    writer.await.expect("writer");
    (stdout, stderr, error)
}

#[tokio::test]
async fn demultiplexes_however_the_stream_is_split() {
    let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let wire = muxed(&[
        (1, b"hello "),
        (2, b"oops\n"),
        (1, &[]),
        (0, b"never echoed"),
        (1, &big),
        (2, b"bye\n"),
        (1, b"!"),
    ]);
    let mut want_out = b"hello ".to_vec();
    want_out.extend_from_slice(&big);
    want_out.push(b'!');
    for piece in [1, 3, 7, 8, 9, 32 << 10, 1 << 20] {
        let (stdout, stderr, error) = run(wire.clone(), piece).await;
        assert_eq!(error, None, "piece {piece}");
        assert!(stdout == want_out, "stdout differs with piece {piece}");
        assert_eq!(stderr, b"oops\nbye\n", "piece {piece}");
    }
}

#[tokio::test]
async fn a_bad_stream_type_is_an_error_and_ends_the_stream() {
    let mut wire = muxed(&[(1, b"ok")]);
    wire.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 1, b'x']);
    wire.extend_from_slice(&muxed(&[(1, b"after")]));
    let (stdout, _, error) = run(wire, 4096).await;
    assert_eq!(stdout, b"ok");
    let error = error.expect("an error");
    assert!(error.contains("stream type 7"), "{error}");
}

#[test]
fn the_upgrade_answer_is_checked() {
    let ok = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00";
    let n = response_head(ok, "c").expect("ok").expect("complete");
    assert_eq!(&ok[n..], b"\x01\x00");
    assert_eq!(response_head(&ok[..20], "c").expect("partial"), None);
    let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
    assert!(matches!(
        response_head(missing, "c"),
        Err(RuntimeError::NotFound(id)) if id == "c"
    ));
    let conflict = b"HTTP/1.1 409 Conflict\r\n\r\n";
    let e = response_head(conflict, "c").expect_err("409");
    assert!(e.to_string().contains("409 Conflict"), "{e}");
    assert!(response_head(b"garbage\r\n\r\n", "c").is_err());
}

/// A fake engine on a Unix socket: reads one request head, answers
/// `answer` in one write, then hands the connection to `then`.
async fn fake_engine<F, Fut>(
    answer: Vec<u8>,
    then: F,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tokio::task::JoinHandle<String>,
)
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("engine.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if conn.read_exact(&mut b).await.is_err() {
                break;
            }
            head.push(b[0]);
        }
        conn.write_all(&answer).await.expect("answer");
        then(conn).await;
        String::from_utf8_lossy(&head).into_owned()
    });
    (dir, path, server)
}

const UPGRADED: &[u8] = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";

#[tokio::test]
async fn attach_reads_the_stream_that_comes_with_the_answer() {
    let mut answer = UPGRADED.to_vec();
    answer.extend_from_slice(&muxed(&[(1, b"first"), (2, b"err")]));
    let (_dir, path, server) = fake_engine(answer, |_| async {}).await;
    let io = attach(&path, "abc_1.x-2").await.expect("attach");
    let chunks: Vec<_> = io.output.collect().await;
    let chunks: Vec<_> = chunks.into_iter().map(|c| c.expect("chunk")).collect();
    assert_eq!(
        chunks,
        vec![
            OutputChunk::Stdout(Bytes::from_static(b"first")),
            OutputChunk::Stderr(Bytes::from_static(b"err")),
        ]
    );
    let request = server.await.expect("server");
    assert!(
        request.starts_with("POST /containers/abc_1.x-2/attach?stream=1&stdin=1&stdout=1&stderr=1&logs=0 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Upgrade: tcp\r\n"), "{request}");
}

#[tokio::test]
async fn attach_reports_what_the_engine_refused() {
    let (_dir, path, _server) = fake_engine(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        |_| async {},
    )
    .await;
    assert!(matches!(attach(&path, "gone").await, Err(RuntimeError::NotFound(id)) if id == "gone"));

    let (_dir, path, _server) = fake_engine(Vec::new(), |_| async {}).await;
    let e = attach(&path, "c").await.err().expect("an error");
    assert!(
        e.to_string()
            .contains("closed the connection before answering"),
        "{e}"
    );

    let e = attach(&path.with_file_name("nothing.sock"), "c")
        .await
        .err()
        .expect("an error");
    assert!(e.to_string().contains("connect to"), "{e}");
    let e = attach(&path, "a/../b").await.err().expect("an error");
    assert!(e.to_string().contains("not a container id"), "{e}");
}

#[tokio::test]
async fn dropping_stdin_does_not_half_close_the_stream() {
    let (tx, rx) = tokio::sync::oneshot::channel::<UnixStream>();
    let (_dir, path, _server) = fake_engine(UPGRADED.to_vec(), |conn| async move {
        let _ = tx.send(conn);
    })
    .await;
    let io = attach(&path, "c").await.expect("attach");
    let engine = rx.await.expect("the engine's end");
    let mut byte = [0u8; 1];
    drop(io.input);
    // A shutdown would be visible at once: the engine would read EOF.
    assert!(matches!(
        engine.try_read(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    ));
    drop(io.output);
    let mut engine = engine;
    assert_eq!(engine.read(&mut byte).await.expect("read"), 0);
}

#[test]
fn only_unix_hosts_have_a_socket_path() {
    assert_eq!(
        unix_socket_path("unix:///var/run/docker.sock"),
        Some("/var/run/docker.sock")
    );
    assert_eq!(unix_socket_path("unix://"), None);
    assert_eq!(unix_socket_path("tcp://127.0.0.1:2375"), None);
    assert_eq!(unix_socket_path("ssh://host"), None);
}
