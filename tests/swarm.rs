//! `engine: swarm` end to end, on a real 3-node Swarm made by
//! `tests/cluster/cluster.sh` (up once for this binary, down at its exit):
//! a controller on the host reaches each node's engine over the harness's
//! veth. Needs root, iproute2, nsenter and dockerd; without them every test
//! says it is skipped, and why (`BENTO_SWARM_TESTS=require` fails instead).
//!
//! The tests take turns (they kill, drain and restart nodes); each starts
//! with every node up, Ready and active.

#[path = "swarm/faults.rs"]
mod faults;
#[path = "swarm/fork.rs"]
mod fork;
#[path = "swarm/images.rs"]
mod images;
mod kit;
#[path = "swarm/leases.rs"]
mod leases;
#[path = "swarm/restart.rs"]
mod restart;
mod swarm_kit;
#[path = "swarm/tls.rs"]
mod tls;
#[path = "swarm/usage.rs"]
mod usage;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bento::runtime::Runtime;
use bento::wire::api::ExitReason;
use kit::{receive, Received};
use swarm_kit::cluster::NODES;
use swarm_kit::{say, Cluster, Ctl, IMAGE};

/// Sends `m0`..`m{n-1}`, then echoes each input until `stop`.
const WORK: &str = r#"
import time
def main(n):
    for i in range(n):
        send(f"m{i}")
        time.sleep(0.002)
    while True:
        m = recv()
        if m is None or m == b"stop":
            break
        send(b"echo " + m)
    print("done")
"#;

/// The messages [`WORK`] sends for `n` and these inputs.
fn work_output(n: usize, inputs: &[&str]) -> Vec<String> {
    (0..n)
        .map(|i| format!("m{i}"))
        .chain(inputs.iter().map(|i| format!("echo {i}")))
        .collect()
}

/// How many sessions each node runs, by hostname.
async fn spread(ctl: &Ctl, ids: &[String]) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for id in ids {
        *by_node.entry(ctl.node_of(id).await).or_insert(0) += 1;
    }
    by_node
}

/// One session of [`WORK`] driven through two detaches: the first client
/// reads 10 messages and leaves mid-stream; the second reads the rest,
/// sends inputs and reads their echoes; the third sends more and `stop`.
async fn drive_through_detaches(ctl: &Ctl, token: &str, n: usize) -> Vec<String> {
    let mut a = ctl.attach(token, 0).await;
    let first = receive(&mut a, |r| r.data.len() >= 10).await;
    a.detach().await;
    let mut b = ctl.attach(token, first.last_seq).await;
    for i in ["a0", "a1", "a2"] {
        b.input()
            .send(i.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("input: {e}"));
    }
    let want = n + 3 - first.data.len();
    let second = receive(&mut b, |r| r.data.len() >= want).await;
    b.detach().await;
    let mut c = ctl.attach(token, second.last_seq).await;
    for i in ["b0", "b1", "stop"] {
        c.input()
            .send(i.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("input: {e}"));
    }
    let third = receive(&mut c, |_| false).await;
    assert_eq!(third.stdout, b"done\n");
    assert_eq!(
        third.exit.as_ref().map(|e| e.reason.clone()),
        Some(ExitReason::Exited { code: 0 })
    );
    [first, second, third]
        .iter()
        .flat_map(Received::data_strings)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_sessions_spread_over_the_nodes_and_deliver_everything() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(WORK).await;
    let n = 100;
    let arg = n.to_string();
    let args = [arg.as_str()];
    let clock = Instant::now();
    let created = futures_util::future::join_all((0..30).map(|_| ctl.session(&f, &args))).await;
    let made = clock.elapsed();
    let ids: Vec<String> = created.iter().map(|(_, id)| id.clone()).collect();
    let by_node = spread(&ctl, &ids).await;
    say(&format!(
        "30 sessions created in {:.1} s; spread over the nodes: {by_node:?}",
        made.as_secs_f64()
    ));
    assert!(by_node.len() >= 2, "all on one node: {by_node:?}");

    let outputs = futures_util::future::join_all(
        created
            .iter()
            .map(|(token, _)| drive_through_detaches(&ctl, token, n)),
    )
    .await;
    let want = work_output(n, &["a0", "a1", "a2", "b0", "b1"]);
    for (out, id) in outputs.iter().zip(&ids) {
        assert_eq!(
            out, &want,
            "session {id}: every message and input exactly once"
        );
    }
    say(&format!(
        "30 sessions delivered everything through two detaches each in {:.1} s",
        clock.elapsed().as_secs_f64()
    ));
}

/// The sandbox from inside, as `key=value` words.
const PROBE: &str = r##"
import os, resource, subprocess
def rw(p):
    try:
        open(p, "w").close()
        return "rw"
    except OSError:
        return "ro"
def first(*paths):
    for p in paths:
        try:
            return open(p).read().strip()
        except OSError:
            pass
    return "?"
def runs(p):
    open(p, "w").write("#!/bin/sh\necho ran\n")
    os.chmod(p, 0o755)
    try:
        return subprocess.run([p], capture_output=True).stdout.decode().strip() or "no"
    except OSError:
        return "no"
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
words = {
    "net": ",".join(sorted(os.listdir("/sys/class/net"))),
    "uid": os.getuid(),
    "root": rw("/probe"),
    "tmp": rw("/tmp/probe"),
    "tmpexec": runs("/tmp/probe.sh"),
    "nnp": st["NoNewPrivs"].strip(),
    "capeff": st["CapEff"].strip(),
    "capbnd": st["CapBnd"].strip(),
    "mem": first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
    "memsw": first("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max"),
    "pids": first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
}
send(" ".join(f"{k}={v}" for k, v in words.items()))
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_holds_on_nodes_that_have_a_bridge() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    for i in 1..=NODES {
        let nets = cluster.docker(i, &["network", "ls", "--format", "{{.Name}}"]);
        let nets = String::from_utf8_lossy(&nets.stdout).into_owned();
        assert!(
            nets.lines().any(|l| l == "bridge"),
            "node {i} has no bridge: {nets}"
        );
    }
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(PROBE).await;
    let created = futures_util::future::join_all((0..3).map(|_| ctl.session(&f, &[]))).await;
    for (token, id) in &created {
        // Asked first: once its output is read, the session is gone.
        let node = ctl.node_of(id).await;
        let mut att = ctl.attach(token, 0).await;
        let r = receive(&mut att, |_| false).await;
        let probe = r.data_strings().join("");
        say(&format!("probe on {node}: {probe}"));
        for want in [
            "net=lo ",
            "uid=65534 ",
            "root=ro ",
            "tmp=rw ",
            "tmpexec=no ",
            "nnp=1 ",
            "capeff=0000000000000000 ",
            "capbnd=0000000000000000 ",
            "mem=67108864 ",
            "pids=128 ",
            "nofile=1024",
        ] {
            assert!(probe.contains(want), "{want:?} on {node}: {probe} {r:?}");
        }
        // No swap beyond the memory limit (cgroup v1: memory+swap = memory).
        assert!(
            probe.contains("memsw=67108864 ") || probe.contains("memsw=0 "),
            "swap on {node}: {probe}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_on_every_node_and_a_missing_one_is_a_clear_error() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    // `nowhere` is on no node; `only2` is on every node while its function
    // is submitted (the syntax check runs in the image), then on node 2 alone.
    cluster.docker_ok(1..=NODES, &["tag", IMAGE, "bento/only2:latest"]);
    let ctl = Ctl::start_with(cluster, 0, &[("only2", &[]), ("nowhere", &[])]).await;
    assert!(matches!(ctl.swarm.image_exists(IMAGE).await, Ok(true)));
    assert!(matches!(
        ctl.swarm.image_exists("bento/nowhere:latest").await,
        Ok(false)
    ));

    let code = |image: &str| bento::wire::api::SubmitFunction {
        code: "send('here')\n".into(),
        name: None,
        image: Some(image.into()),
        filename: None,
    };
    // The syntax check at submit runs in the image, so it fails at once.
    let clock = Instant::now();
    let refused = ctl.client.submit_function(&code("nowhere")).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("bento images build nowhere"), "{message}");
    say(&format!(
        "an image on no node: refused in {:.2} s: {message}",
        clock.elapsed().as_secs_f64()
    ));

    // On some nodes only: Swarm does not know which node has it, so a
    // session either lands on node 2 and runs, or is refused at once.
    let f = match ctl.client.submit_function(&code("only2")).await {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}"),
    };
    cluster.docker_ok([1, 3], &["rmi", "bento/only2:latest"]);
    assert!(matches!(
        ctl.swarm.image_exists("bento/only2:latest").await,
        Ok(false)
    ));
    let (mut ran, mut refused) = (0, 0);
    for _ in 0..6 {
        let body = bento::wire::api::CreateSession {
            function: f.clone(),
            args: vec![],
            transient: false,
            limits: Default::default(),
            forkable: None,
            env: Default::default(),
            secrets: Vec::new(),
        };
        let clock = Instant::now();
        match ctl.client.create_session(&body).await {
            Ok(s) => {
                let mut att = ctl.attach(&s.token, 0).await;
                let r = receive(&mut att, |_| false).await;
                assert_eq!(r.data_strings(), vec!["here"]);
                ran += 1;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("bento images build only2"), "{e}");
                assert!(clock.elapsed() < Duration::from_secs(5), "slow: {e}");
                refused += 1;
            }
        }
    }
    say(&format!(
        "an image on node 2 only: {ran} sessions ran there, {refused} refused at once"
    ));
    assert!(refused > 0, "Swarm placed every session on node 2");
    assert!(
        ctl.services("session").await.len() <= ran,
        "a refused session's service is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_spreads_over_the_nodes() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 3).await;
    let until = Instant::now() + Duration::from_secs(60);
    while kit::pool_ready(&ctl.url()).await < 3 {
        assert!(Instant::now() < until, "the pool never filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = ctl.services("pool").await;
    let mut nodes = BTreeMap::new();
    for s in &pool {
        let node = ctl.swarm.node_of(&s.id).await.ok().flatten();
        *nodes.entry(node.unwrap_or_default()).or_insert(0) += 1;
    }
    say(&format!("warm pool of 3 over the nodes: {nodes:?}"));
    assert!(nodes.len() >= 2, "warm containers on one node: {nodes:?}");
    let f = ctl.submit(PROBE).await;
    let clock = Instant::now();
    let (token, _) = ctl.session(&f, &[]).await;
    let took = clock.elapsed();
    assert!(
        ctl.info(&token).await.warm,
        "a default run takes a warm container"
    );
    let mut att = ctl.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    let probe = r.data_strings().join("");
    say(&format!(
        "a warm session started in {:.0} ms: {probe}",
        took.as_secs_f64() * 1e3
    ));
    assert!(
        probe.contains("net=lo ") && probe.contains("nnp=1 "),
        "{probe}"
    );
    assert_eq!(r.exit.map(|e| e.code), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_images_placement_constraints_are_passed_to_swarm() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    cluster.docker_ok(1..=NODES, &["tag", IMAGE, "bento/pinned:latest"]);
    // cluster.sh labels node I with bento.cluster.node=I.
    let on3: &[&str] = &["node.labels.bento.cluster.node == 3"];
    let ctl = Ctl::start_with(cluster, 0, &[("pinned", on3)]).await;
    let body = bento::wire::api::SubmitFunction {
        code: "send('pinned')\n".into(),
        name: None,
        image: Some("pinned".into()),
        filename: None,
    };
    let f = match ctl.client.submit_function(&body).await {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}"),
    };
    let created = futures_util::future::join_all((0..4).map(|_| ctl.session(&f, &[]))).await;
    let ids: Vec<String> = created.iter().map(|(_, id)| id.clone()).collect();
    let by_node = spread(&ctl, &ids).await;
    say(&format!(
        "4 sessions of an image pinned to node 3: {by_node:?}"
    ));
    assert_eq!(
        by_node.keys().collect::<Vec<_>>(),
        vec![&cluster.hostname(3)]
    );
    for (token, _) in &created {
        let mut att = ctl.attach(token, 0).await;
        assert_eq!(
            receive(&mut att, |_| false).await.data_strings(),
            vec!["pinned"]
        );
    }
}
