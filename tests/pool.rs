//! The warm pool, against the real engine: warm containers are hardened like
//! cold ones, a session takes one and it is never reused, the pool refills,
//! replaces a container that breaks, and is drained on shutdown.

mod kit;

use std::time::{Duration, Instant};

use bento::wire::api::CreateSession;
use bento::wire::api::LimitsRequest;
use kit::{receive, TestServer};

async fn start(warm: usize) -> TestServer {
    TestServer::start_with(|c| {
        if let Some(python) = c.images.get_mut("python") {
            python.warm = warm;
        }
    })
    .await
}

async fn create(s: &TestServer, function: &str, limits: LimitsRequest) -> (String, String) {
    let body = CreateSession {
        function: function.into(),
        args: vec![],
        transient: false,
        limits,
        forkable: None,
        env: Default::default(),
        secrets: Vec::new(),
    };
    match s.client.create_session(&body).await {
        Ok(c) => (c.token, c.id),
        Err(e) => panic!("create: {e}"),
    }
}

/// What the sandbox looks like from inside, as one line.
const PROBE: &str = r#"
import os
def writable(p):
    try:
        open(p, "w").close()
        return "rw"
    except OSError:
        return "ro"
ifaces = sorted(os.listdir("/sys/class/net"))
send(f"uid={os.getuid()} root={writable('/probe')} tmp={writable('/tmp/probe')} net={','.join(ifaces)}")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_takes_a_hardened_warm_container_that_is_never_reused() {
    let s = start(2).await;
    let pooled = s.wait_pool(2, 2).await;
    let f = s.submit(PROBE).await;

    // Warm: taken from the pool, and the sandbox is the cold one's.
    let (warm_token, _) = create(&s, &f, LimitsRequest::default()).await;
    let info = s.wait_session(&warm_token, "created", |_| true).await;
    assert!(info.warm, "a default-limits run takes a warm container");
    let mut att = s.attach(&warm_token, 0).await;
    let warm = receive(&mut att, |_| false).await;
    drop(att);
    assert_eq!(warm.exit.as_ref().map(|e| e.code), Some(0), "{warm:?}");

    // Cold: other pids than the pool's, so it starts its own container.
    let other = LimitsRequest {
        pids: Some(100),
        ..LimitsRequest::default()
    };
    let (cold_token, _) = create(&s, &f, other).await;
    let info = s.wait_session(&cold_token, "created", |_| true).await;
    assert!(!info.warm, "other limits start cold");
    let mut att = s.attach(&cold_token, 0).await;
    let cold = receive(&mut att, |_| false).await;
    drop(att);
    assert_eq!(
        warm.data_strings(),
        vec!["uid=65534 root=ro tmp=rw net=lo".to_string()]
    );
    assert_eq!(warm.data_strings(), cold.data_strings());

    // The taken container is reaped with its session, never returned; the
    // pool is back to two, one of them new.
    s.wait_reaped(&warm_token).await;
    s.wait_reaped(&cold_token).await;
    let now = s.wait_pool(2, 2).await;
    assert_eq!(
        now.intersection(&pooled).count(),
        1,
        "{pooled:?} -> {now:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_and_cold_containers_get_the_same_host_config() {
    let s = start(1).await;
    let pooled = s.wait_pool(1, 1).await;
    let f = s.submit("x = recv()\n").await;
    let other = LimitsRequest {
        pids: Some(100),
        ..LimitsRequest::default()
    };
    let (token, id) = create(&s, &f, other).await;
    s.wait_session(&token, "running", |_| true).await;
    let docker = bento::runtime::images::connect(&kit::repo_config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cold_id = {
        use bento::runtime::Runtime;
        let rt = bento::runtime::DockerRuntime::connect(None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let list = rt
            .list(&format!("{}.session={id}", s.label_prefix))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(list.len(), 1);
        list[0].id.clone()
    };
    let warm_id = pooled.iter().next().cloned().unwrap_or_default();
    let inspect = |id: String| {
        let d = docker.clone();
        async move {
            d.inspect_container(&id, None)
                .await
                .unwrap_or_else(|e| panic!("inspect {id}: {e}"))
        }
    };
    let (warm, cold) = (inspect(warm_id).await, inspect(cold_id).await);
    let (wc, cc) = (
        warm.config.unwrap_or_default(),
        cold.config.unwrap_or_default(),
    );
    assert_eq!(wc.user, cc.user);
    assert_eq!(wc.image, cc.image);
    assert_eq!(wc.network_disabled, cc.network_disabled);
    let (mut wh, mut ch) = (
        warm.host_config.unwrap_or_default(),
        cold.host_config.unwrap_or_default(),
    );
    assert_eq!(wh.pids_limit, Some(128), "the image's default pids");
    assert_eq!(ch.pids_limit, Some(100), "the run's pids");
    // Everything else, including the sandbox, is the same.
    wh.pids_limit = None;
    ch.pids_limit = None;
    assert_eq!(wh, ch);
    assert_eq!(wh.network_mode.as_deref(), Some("none"));
    assert_eq!(wh.readonly_rootfs, Some(true));
    assert_eq!(wh.cap_drop, Some(vec!["ALL".to_string()]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_warm_container_is_replaced_and_shutdown_drains_the_pool() {
    let mut s = start(1).await;
    let pooled = s.wait_pool(1, 1).await;
    let victim = pooled.iter().next().cloned().unwrap_or_default();
    let status = std::process::Command::new("docker")
        .args(["kill", &victim])
        .stdout(std::process::Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(st) if st.success()),
        "docker kill: {status:?}"
    );
    // The watcher sees its output end, removes it and a new one starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let replaced = loop {
        let now = s.wait_pool(1, 1).await;
        if !now.contains(&victim) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the killed container was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all: Vec<String> = s
        .pool_containers()
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(!all.contains(&victim), "the broken container is removed");

    // The replacement serves a session.
    let f = s.submit("send('warm')\n").await;
    let (token, _) = create(&s, &f, LimitsRequest::default()).await;
    let info = s.wait_session(&token, "created", |_| true).await;
    assert!(info.warm);
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.data_strings(), vec!["warm"]);
    drop(att);
    s.wait_reaped(&token).await;
    let refilled = s.wait_pool(1, 1).await;
    assert!(refilled.is_disjoint(&replaced));

    // A graceful shutdown removes the idle containers.
    s.halt().await;
    let left = s.pool_containers().await;
    assert!(left.is_empty(), "left after shutdown: {left:?}");
    s.stop().await;
}

/// The child-process controllers of the kit get their pool by an edit of
/// the parsed image description, which changes `warm` and nothing else,
/// and fails loudly if there is no `warm` to change (a string replace once
/// did nothing, quietly, if the file's layout changed).
#[test]
fn the_kit_sets_warm_in_the_image_description_or_fails() {
    let path = kit::repo().join("config/images/python.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let edited = kit::controller::with_warm(&yaml, 3).unwrap_or_else(|e| panic!("{e}"));
    let parse = |y: &str| -> serde_yaml::Value {
        serde_yaml::from_str(y).unwrap_or_else(|e| panic!("{e}: {y}"))
    };
    let (mut before, after) = (parse(&yaml), parse(&edited));
    assert_eq!(after["warm"], serde_yaml::Value::from(3u64));
    before["warm"] = serde_yaml::Value::from(3u64);
    assert_eq!(before, after, "only warm changes");
    let missing = kit::controller::with_warm("name: python\ncontext: images/python\n", 1);
    assert!(missing.is_err(), "no warm key: {missing:?}");
}
