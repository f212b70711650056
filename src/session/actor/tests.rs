//! The session's tasks and shutdown, against the fake runtime.

use bytes::Bytes;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controller::create::NewSession;
use crate::session::tests::{fixture_on, function};
use crate::session::InputItem;

/// A session whose container neither writes nor reads its stdin: its
/// reader waits for output that never comes, and its stdin writer is stuck
/// in a write. Shutdown still ends, and leaves the function running.
#[tokio::test]
async fn shutdown_ends_the_tasks_of_a_container_that_never_ends() {
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let f = fixture_on(|_| {}, shutdown.clone(), tracker.clone());
    let (fake, launcher) = (&f.fake, &f.launcher);
    let function = function();
    let new = NewSession {
        function: &function,
        code: "recv()".into(),
        args: vec![],
        transient: false,
        limits: &Default::default(),
        forkable: true,
        fork: None,
        env: Default::default(),
        tenant: "default".into(),
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
    // The actor, its reader, its stdin writer and its usage sampler.
    assert_eq!(tracker.len(), 4, "the session's tasks are tracked");
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
