//! The session's tasks and shutdown, against the fake runtime.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ImageSpec};
use crate::controller::create::{Launcher, NewSession};
use crate::controller::pool::Pool;
use crate::controller::sessions::Sessions;
use crate::runtime::fake::FakeRuntime;
use crate::session::spawn::SessionContext;
use crate::session::InputItem;
use crate::wire::api::FunctionInfo;

/// A session whose container neither writes nor reads its stdin: its
/// reader waits for output that never comes, and its stdin writer is stuck
/// in a write. Shutdown still ends, and leaves the function running.
#[tokio::test]
async fn shutdown_ends_the_tasks_of_a_container_that_never_ends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let spec = ImageSpec::builtin_python(dir.path());
    config.images.insert(spec.name.clone(), spec);
    let fake = FakeRuntime::default();
    let db = crate::session::store::Db::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let runtime: Arc<dyn crate::runtime::Runtime> = Arc::new(fake.clone());
    let ctx = SessionContext::new(
        &config,
        runtime.clone(),
        Arc::new(db),
        shutdown.clone(),
        tracker.clone(),
    );
    let launcher = Launcher {
        sessions: Sessions::new(),
        pool: Pool::new(&config, runtime),
        ctx,
        config: Arc::new(config),
    };
    let function = FunctionInfo {
        id: "fn-test".into(),
        name: None,
        image: "python".into(),
        size: 0,
        created_at: 0,
        filename: "function.py".into(),
    };
    let new = NewSession {
        function: &function,
        code: "recv()".into(),
        args: vec![],
        transient: false,
        limits: &Default::default(),
    };
    let created = launcher
        .create(new)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let handle = launcher
        .sessions
        .get(&created.token)
        .unwrap_or_else(|| panic!("session not registered"));
    // The test holds the container's end of stdin and never reads it.
    let _container = fake
        .take_container()
        .unwrap_or_else(|| panic!("no container"));
    let attached = match handle.attach(0).await {
        Ok(Ok(a)) => a,
        other => panic!("attach: {:?}", other.map(|r| r.map(|_| ()))),
    };
    // More than the fake's stdin buffer (1 MiB): the write blocks.
    let input = InputItem {
        client: attached.client,
        seq: 1,
        bytes: Some(Bytes::from(vec![b'x'; 3 << 20])),
    };
    attached
        .input
        .send(input)
        .await
        .unwrap_or_else(|e| panic!("input: {e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The actor, its reader and its stdin writer.
    assert_eq!(tracker.len(), 3, "the session's tasks are tracked");
    drop(attached);

    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        panic!("shutdown hangs: {} tasks left", tracker.len());
    }
    assert!(fake.killed().is_empty(), "the function keeps running");
}
