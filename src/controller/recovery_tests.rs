//! Recovery against the fake runtime: what a restarted controller makes of
//! the containers it finds and the sessions its database holds, without
//! Docker. (`check_sync` has its own tests in `recovery.rs`; the whole
//! restart, with real functions, is in `tests/durability.rs` and
//! `tests/controllers.rs`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{reconcile, resume_all, Recovery, Report};
use crate::config::{Config, ImageSpec};
use crate::controller::create::Launcher;
use crate::runtime::fake::{frame, FakeContainer, FakeRuntime};
use crate::runtime::{ContainerExit, ContainerState};
use crate::session::log::Entry;
use crate::session::record::SessionRecord;
use crate::session::spawn::SessionContext;
use crate::session::store::{Db, SessionRow};
use crate::wire::api::{ExitInfo, ExitReason, SessionInfo, SessionState};
use crate::wire::driver::{Header, Kind, NONCE_LEN};

/// This controller's identity; `OTHER` is another's under the same prefix.
const ME: &str = "c-0000000000000001";
const OTHER: &str = "c-0000000000000002";

struct Fixture {
    fake: FakeRuntime,
    recovery: Recovery,
    db: Arc<Db>,
    prefix: String,
    _dir: tempfile::TempDir,
}

fn fixture(tweak: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        controller_id: ME.into(),
        ..Config::default()
    };
    let spec = ImageSpec::builtin_python(dir.path());
    config.images.insert(spec.name.clone(), spec);
    tweak(&mut config);
    let prefix = config.label_prefix.clone();
    let fake = FakeRuntime::default();
    let db = Arc::new(Db::open(dir.path()).expect("state database"));
    let ctx = SessionContext::new(
        &config,
        Arc::new(fake.clone()),
        db.clone(),
        CancellationToken::new(),
        TaskTracker::new(),
    );
    let recovery = Recovery::new(&Launcher::new(Arc::new(config), ctx));
    Fixture {
        fake,
        recovery,
        db,
        prefix,
        _dir: dir,
    }
}

impl Fixture {
    /// `PREFIX.KIND=value`, and `PREFIX.controller=owner` if there is one.
    fn labels(&self, kind: &str, value: &str, owner: Option<&str>) -> HashMap<String, String> {
        let mut l = HashMap::from([(format!("{}.{kind}", self.prefix), value.to_string())]);
        if let Some(owner) = owner {
            l.insert(format!("{}.controller", self.prefix), owner.to_string());
        }
        l
    }

    /// A session's container, made by this controller before the restart.
    fn container(&self, id: &str, state: ContainerState) -> String {
        self.fake
            .add_container(self.labels("session", id, Some(ME)), state)
    }

    /// A session the database holds, on `container`.
    fn row(&self, n: u32, container: &str) -> SessionRow {
        let record = SessionRecord {
            token: format!("{n:064x}"),
            id: format!("s-{n:010}"),
            function: "fn-test".into(),
            function_name: None,
            image: "python".into(),
            transient: false,
            container: container.into(),
            created_at: 1,
            deadline: None,
            stop_grace: crate::config::DEFAULT_STOP_GRACE,
            limits: None,
            warm: false,
            args: vec![],
            forkable: false,
            tenant: "default".into(),
            fork: None,
            env: Default::default(),
        };
        let row = SessionRow::new(record, Some(0));
        self.db.insert_session(&row).expect("insert session row");
        row
    }

    async fn info(&self, token: &str) -> SessionInfo {
        let handle = self
            .recovery
            .sessions
            .get(token)
            .unwrap_or_else(|| panic!("session {token:.8} is not live"));
        handle.info().await.expect("session info")
    }

    /// Waits until the session is live and `pred` holds for its info.
    async fn wait(&self, token: &str, what: &str, pred: impl Fn(&SessionInfo) -> bool) {
        for _ in 0..1000 {
            if let Some(h) = self.recovery.sessions.get(token) {
                if h.info().await.is_ok_and(|i| pred(&i)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// The container the resume attached to, taken to play its driver.
    async fn attached_container(&self) -> FakeContainer {
        for _ in 0..1000 {
            if let Some(c) = self.fake.take_container() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("nothing attached to a container");
    }
}

fn exited(code: i64) -> ContainerState {
    ContainerState::Exited(ContainerExit {
        code,
        oom_killed: false,
    })
}

fn reason(info: &SessionInfo) -> Option<ExitReason> {
    info.exit.as_ref().map(|e| e.reason.clone())
}

/// Reads the RESUME the controller wrote to the driver: (offset, nonce).
async fn read_resume(c: &mut FakeContainer) -> (u64, [u8; NONCE_LEN]) {
    let mut header = [0u8; 8];
    c.stdin
        .read_exact(&mut header)
        .await
        .expect("RESUME header");
    let header = Header::parse(&header).expect("a good header");
    assert_eq!(header.kind, Kind::Resume, "the first frame is RESUME");
    let len = header.len;
    assert_eq!(len, 8 + NONCE_LEN, "RESUME payload");
    let mut payload = vec![0u8; len];
    c.stdin
        .read_exact(&mut payload)
        .await
        .expect("RESUME payload");
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&payload[..8]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&payload[8..]);
    (u64::from_be_bytes(offset), nonce)
}

/// The driver's SYNC answer, marked with `nonce`.
fn sync(nonce: &[u8; NONCE_LEN], offset: u64, received: u64, consumed: u64) -> Vec<u8> {
    let mut p = nonce.to_vec();
    for v in [offset, received, consumed] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

#[tokio::test]
async fn our_orphans_are_removed_and_other_controllers_containers_left_alone() {
    let f = fixture(|_| {});
    // A running session the database knows: not an orphan.
    let known = f.container("s-0000000001", ContainerState::Running);
    f.row(1, &known);
    let ours = [
        f.fake
            .add_container(f.labels("session", "s-gone", Some(ME)), exited(0)),
        f.fake.add_container(
            f.labels("pool", "python", Some(ME)),
            ContainerState::Running,
        ),
        f.fake.add_container(
            f.labels("check", "python", Some(ME)),
            ContainerState::Running,
        ),
    ];
    let others = [
        f.fake.add_container(
            f.labels("session", "s-theirs", Some(OTHER)),
            ContainerState::Running,
        ),
        // From before controllers had identities: not ours to touch either.
        f.fake
            .add_container(f.labels("session", "s-old", None), ContainerState::Running),
    ];
    // Another label prefix: not even looked at.
    let elsewhere = f.fake.add_container(
        HashMap::from([("elsewhere.bento.session".to_string(), "s-x".to_string())]),
        ContainerState::Running,
    );

    let (report, _pending) = reconcile(&f.recovery).await.expect("reconcile");
    assert_eq!(
        report,
        Report {
            resuming: 1,
            ended: 0,
            orphans_removed: 3,
            others_left: 2,
        }
    );
    let mut removed = f.fake.removed();
    removed.sort();
    let mut want = ours.to_vec();
    want.sort();
    assert_eq!(removed, want, "exactly our orphans are removed");
    for id in others.iter().chain([&known, &elsewhere]) {
        assert!(!removed.contains(id), "{id} was removed");
    }
    assert!(f.fake.killed().is_empty(), "nothing is killed");

    // Level-triggered: a second pass finds nothing more to do.
    let (again, _) = reconcile(&f.recovery).await.expect("reconcile again");
    assert_eq!(
        again,
        Report {
            others_left: 2,
            ..Report::default()
        }
    );
    assert_eq!(f.fake.removed().len(), 3);
}

#[tokio::test]
async fn a_session_whose_function_ended_while_away_is_served_with_its_exit() {
    let f = fixture(|_| {});
    let container = f.container("s-0000000001", exited(3));
    let row = f.row(1, &container);

    let (report, _) = reconcile(&f.recovery).await.expect("reconcile");
    assert_eq!(report.ended, 1);
    assert_eq!(report.resuming, 0);
    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    let info = f.info(&row.record.token).await;
    assert_eq!(reason(&info), Some(ExitReason::Exited { code: 3 }));
    assert_eq!(info.last_seq, 1, "the exit is its only message");
    let saved =
        f.db.session(&row.record.token)
            .expect("read row")
            .expect("row");
    assert_eq!(
        saved.exit.map(|e| e.reason),
        Some(ExitReason::Exited { code: 3 }),
        "the exit is recorded"
    );
    assert!(saved.ended_at.is_some());
    assert!(
        f.fake.removed().is_empty(),
        "its container is kept until it is reaped"
    );
}

#[tokio::test]
async fn the_kill_reason_recorded_before_the_restart_wins_over_the_exit_code() {
    let f = fixture(|_| {});
    let container = f.container("s-0000000001", exited(137));
    let row = f.row(1, &container);
    f.db.set_kill_reason(&row.record.token, &ExitReason::Killed)
        .expect("set kill reason");

    reconcile(&f.recovery).await.expect("reconcile");
    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    assert_eq!(
        reason(&f.info(&row.record.token).await),
        Some(ExitReason::Killed)
    );
}

#[tokio::test]
async fn a_session_whose_container_is_gone_ends_as_lost() {
    let f = fixture(|_| {});
    // The engine has never heard of it (removed behind our back).
    let row = f.row(1, "gone0123456789");

    let (report, _) = reconcile(&f.recovery).await.expect("reconcile");
    assert_eq!(report.ended, 1);
    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    match reason(&f.info(&row.record.token).await) {
        Some(ExitReason::Lost { .. }) => {}
        other => panic!("a gone container ends as lost, not {other:?}"),
    }
    let saved =
        f.db.session(&row.record.token)
            .expect("read row")
            .expect("row");
    assert!(
        matches!(saved.exit.map(|e| e.reason), Some(ExitReason::Lost { .. })),
        "and is recorded as such"
    );
}

#[tokio::test]
async fn an_exit_recorded_with_the_log_is_kept_even_if_the_container_is_gone() {
    let f = fixture(|_| {});
    let row = f.row(1, "gone0123456789");
    let exit = ExitInfo::from(ExitReason::Exited { code: 4 });
    // A minute ago (an end before `session_ttl` would be reaped at once).
    let ended_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        - 60;
    f.db.set_exit(&row.record.token, &exit, ended_at)
        .expect("set exit");
    // Its spool ends with the exit, as the actor left it.
    let mut log = f.recovery.ctx.log(&row.record.id);
    log.append(Entry::Exit(exit), 0).expect("append the exit");
    log.flush().expect("spool the log");
    drop(log);

    reconcile(&f.recovery).await.expect("reconcile");
    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    let info = f.info(&row.record.token).await;
    assert_eq!(reason(&info), Some(ExitReason::Exited { code: 4 }));
    assert_eq!(
        info.ended_at,
        Some(ended_at),
        "the recorded end, not a new one"
    );
}

#[tokio::test]
async fn a_running_session_is_marked_resuming_then_resumed_by_its_driver() {
    let f = fixture(|_| {});
    let container = f.container("s-0000000001", ContainerState::Running);
    let row = f.row(1, &container);

    let (report, pending) = reconcile(&f.recovery).await.expect("reconcile");
    assert_eq!(report.resuming, 1);
    assert!(
        f.recovery.sessions.resuming(&row.record.token).is_some(),
        "listed as resuming"
    );
    assert!(
        f.recovery.sessions.get(&row.record.token).is_none(),
        "no actor yet"
    );

    let resumed = tokio::spawn(resume_all(
        f.recovery.clone(),
        pending,
        CancellationToken::new(),
    ));
    let mut c = f.attached_container().await;
    assert_eq!(c.id, container);
    let (offset, nonce) = read_resume(&mut c).await;
    assert_eq!(offset, 0, "nothing was durable");
    f.fake
        .push(&c.id, frame(Kind::Sync, false, &sync(&nonce, 0, 0, 0)))
        .await;
    resumed.await.expect("resume_all");
    assert!(f.recovery.sessions.resuming(&row.record.token).is_none());

    // The function's output flows into the restored session again.
    f.fake.push(&c.id, frame(Kind::Data, true, b"after")).await;
    f.wait(&row.record.token, "output after the resume", |i| {
        i.state == SessionState::Running && i.last_seq == 1
    })
    .await;
    assert!(f.fake.killed().is_empty());
}

#[tokio::test]
async fn a_driver_resuming_from_another_offset_is_killed_and_its_session_lost() {
    let f = fixture(|_| {});
    let container = f.container("s-0000000001", ContainerState::Running);
    let row = f.row(1, &container);
    let (_, pending) = reconcile(&f.recovery).await.expect("reconcile");

    let resumed = tokio::spawn(resume_all(
        f.recovery.clone(),
        pending,
        CancellationToken::new(),
    ));
    let mut c = f.attached_container().await;
    let (_, nonce) = read_resume(&mut c).await;
    // Output the controller never made durable.
    f.fake
        .push(&c.id, frame(Kind::Sync, false, &sync(&nonce, 4096, 0, 0)))
        .await;
    resumed.await.expect("resume_all");

    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    match reason(&f.info(&row.record.token).await) {
        Some(ExitReason::Lost { message }) => {
            assert!(message.contains("offset 4096"), "{message}")
        }
        other => panic!("expected lost, got {other:?}"),
    }
    assert_eq!(f.fake.killed(), vec![container]);
    let saved =
        f.db.session(&row.record.token)
            .expect("read row")
            .expect("row");
    assert!(
        matches!(saved.kill_reason, Some(ExitReason::Lost { .. })),
        "the kill reason is recorded: {:?}",
        saved.kill_reason
    );
}

#[tokio::test]
async fn a_driver_that_does_not_answer_resume_in_time_is_killed() {
    let f = fixture(|c| c.resume_timeout = Duration::from_millis(200));
    let container = f.container("s-0000000001", ContainerState::Running);
    let row = f.row(1, &container);
    let (_, pending) = reconcile(&f.recovery).await.expect("reconcile");

    let resumed = tokio::spawn(resume_all(
        f.recovery.clone(),
        pending,
        CancellationToken::new(),
    ));
    // Attached to, and silent.
    let _silent = f.attached_container().await;
    resumed.await.expect("resume_all");

    f.wait(&row.record.token, "ended", |i| {
        i.state == SessionState::Ended
    })
    .await;
    match reason(&f.info(&row.record.token).await) {
        Some(ExitReason::Lost { message }) => {
            assert!(message.contains("did not answer RESUME"), "{message}")
        }
        other => panic!("expected lost, got {other:?}"),
    }
    assert_eq!(f.fake.killed(), vec![container]);
}
