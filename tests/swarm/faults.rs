//! Nodes and controllers failing under the Swarm engine: a node SIGKILLed,
//! the controller SIGKILLed and restarted, a node drained.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bento::wire::api::{ExitReason, SessionState};

use crate::kit::{receive, Received};
use crate::swarm_kit::{say, Cluster, Ctl};

/// Sends `t0`, `t1`, ... every 50 ms until an input arrives (or a minute
/// passes), then prints `done`.
const TICKER: &str = r#"
import time
def main():
    i = 0
    while not poll() and i < 1200:
        send(f"t{i}")
        i += 1
        time.sleep(0.05)
    recv()
    print("done")
"#;

/// `t{from}`, `t{from+1}`, ... without a gap.
fn contiguous(data: &[String], from: usize) -> bool {
    data.iter()
        .enumerate()
        .all(|(k, d)| *d == format!("t{}", from + k))
}

/// Sessions by the node that runs them.
async fn by_node(ctl: &Ctl, sessions: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (token, id) in sessions {
        nodes
            .entry(ctl.node_of(id).await)
            .or_default()
            .push(token.clone());
    }
    nodes
}

/// Reads `k` messages of a session from the start, then detaches.
async fn read_some(ctl: &Ctl, token: &str, k: usize) -> Received {
    let mut att = ctl.attach(token, 0).await;
    let r = receive(&mut att, |r| r.data.len() >= k).await;
    att.detach().await;
    r
}

/// Ends a ticker with `stop` and reads it to its end after `after`.
async fn stop_and_read(ctl: &Ctl, token: &str, after: u64) -> Received {
    let mut att = ctl.attach(token, after).await;
    att.input()
        .send(b"stop".to_vec())
        .await
        .unwrap_or_else(|e| panic!("input: {e}"));
    receive(&mut att, |_| false).await
}

async fn wait_ended(ctl: &Ctl, token: &str, limit: Duration) -> ExitReason {
    let until = Instant::now() + limit;
    loop {
        let info = ctl.info(token).await;
        if info.state == SessionState::Ended {
            if let Some(exit) = info.exit {
                return exit.reason;
            }
        }
        assert!(Instant::now() < until, "session did not end: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` tickers spread by Swarm, the worker that runs the most of them
/// (node 1 is the manager: never the victim), and the first 5 messages of
/// each, read and detached from.
struct Tickers {
    /// (token, id) of each.
    sessions: Vec<(String, String)>,
    nodes: BTreeMap<String, Vec<String>>,
    victim: usize,
    victim_host: String,
    /// The tokens of the victim's sessions.
    lost: Vec<String>,
    before: BTreeMap<String, Received>,
}

impl Tickers {
    async fn start(cluster: &Cluster, ctl: &Ctl, n: usize) -> Tickers {
        let f = ctl.submit(TICKER).await;
        let sessions = futures_util::future::join_all((0..n).map(|_| ctl.session(&f, &[]))).await;
        let nodes = by_node(ctl, &sessions).await;
        let victim = (2..=3)
            .max_by_key(|i| nodes.get(&cluster.hostname(*i)).map_or(0, Vec::len))
            .unwrap_or(2);
        let victim_host = cluster.hostname(victim);
        let lost: Vec<String> = nodes.get(&victim_host).cloned().unwrap_or_default();
        assert!(!lost.is_empty(), "no session on a worker: {nodes:?}");
        let mut before = BTreeMap::new();
        for (token, _) in &sessions {
            before.insert(token.clone(), read_some(ctl, token, 5).await);
        }
        Tickers {
            sessions,
            nodes,
            victim,
            victim_host,
            lost,
            before,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_sessions_end_as_node_lost_and_the_others_finish() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let Tickers {
        sessions,
        nodes,
        victim,
        victim_host,
        lost,
        before,
    } = Tickers::start(cluster, &ctl, 9).await;

    let clock = Instant::now();
    cluster.sh(&["kill-node", &victim.to_string()]).await;
    for token in &lost {
        let reason = wait_ended(&ctl, token, Duration::from_secs(30)).await;
        assert_eq!(
            reason,
            ExitReason::NodeLost {
                node: victim_host.clone()
            }
        );
    }
    say(&format!(
        "{} sessions on {victim_host} ended as node_lost {:.1} s after its SIGKILL (spread {:?})",
        lost.len(),
        clock.elapsed().as_secs_f64(),
        nodes.iter().map(|(n, s)| (n, s.len())).collect::<Vec<_>>()
    ));
    read_to_the_end(&ctl, &sessions, &lost, &before, &victim_host).await;

    // Back: the manager takes it again, and nothing of ours is left on it.
    cluster.sh(&["start-node", &victim.to_string()]).await;
    let clock = Instant::now();
    wait_swept(cluster, &ctl, victim).await;
    say(&format!(
        "nothing of ours left on {victim_host} {:.1} s after its start",
        clock.elapsed().as_secs_f64()
    ));
}

/// Reads every session on from where [`Tickers::start`] left it: those on
/// the lost node to their `node_lost` end, with every message up to the
/// loss; the others, stopped, to their normal end with all their output.
async fn read_to_the_end(
    ctl: &Ctl,
    sessions: &[(String, String)],
    lost: &[String],
    before: &BTreeMap<String, Received>,
    victim_host: &str,
) {
    for (token, _) in sessions {
        let first = &before[token];
        let mut att = ctl.attach(token, first.last_seq).await;
        let rest = if lost.contains(token) {
            receive(&mut att, |_| false).await
        } else {
            drop(att);
            stop_and_read(ctl, token, first.last_seq).await
        };
        let data: Vec<String> = first
            .data_strings()
            .into_iter()
            .chain(rest.data_strings())
            .collect();
        assert!(contiguous(&data, 0) && data.len() >= 5, "{data:?}");
        let reason = rest.exit.map(|e| e.reason);
        if lost.contains(token) {
            let want = ExitReason::NodeLost {
                node: victim_host.to_string(),
            };
            assert_eq!(reason.as_ref(), Some(&want));
            assert!(want.to_string().contains("went down"), "{want}");
        } else {
            assert_eq!(reason, Some(ExitReason::Exited { code: 0 }));
            assert_eq!(rest.stdout, b"done\n");
        }
    }
}

/// Waits until node `i` has no container of this controller left, running
/// or not.
async fn wait_swept(cluster: &Cluster, ctl: &Ctl, i: usize) {
    let filter = format!("label={}.controller", ctl.prefix);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = cluster.docker(i, &["ps", "-aq", "--filter", &filter]);
        if o.status.success() && o.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "containers left on node {i}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many processes of this machine run in container `id` (by their
/// cgroup, which names it): seen without asking its engine.
fn processes_in(container: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| c.contains(container))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_engine_alone_is_killed_loses_its_sessions_and_is_swept_when_back() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let Tickers {
        sessions,
        nodes,
        victim,
        victim_host,
        lost,
        before,
    } = Tickers::start(cluster, &ctl, 9).await;
    let filter = format!("label={}.session", ctl.prefix);
    let o = cluster.docker(victim, &["ps", "-q", "--no-trunc", "--filter", &filter]);
    let ghosts: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ghosts.len(), lost.len(), "{ghosts:?} for {lost:?}");

    // dockerd alone: containerd, the shims and the functions live on.
    let clock = Instant::now();
    cluster
        .sh(&["kill-node", &victim.to_string(), "--engine-only"])
        .await;
    for token in &lost {
        let reason = wait_ended(&ctl, token, Duration::from_secs(30)).await;
        assert_eq!(
            reason,
            ExitReason::NodeLost {
                node: victim_host.clone()
            }
        );
    }
    say(&format!(
        "{} sessions on {victim_host} ended as node_lost {:.1} s after its engine alone was SIGKILLed (spread {:?})",
        lost.len(),
        clock.elapsed().as_secs_f64(),
        nodes.iter().map(|(n, s)| (n, s.len())).collect::<Vec<_>>()
    ));
    // Their functions still run, with no engine to answer for them.
    for g in &ghosts {
        assert!(
            processes_in(g) > 0,
            "container {g} of a lost session no longer runs"
        );
    }
    read_to_the_end(&ctl, &sessions, &lost, &before, &victim_host).await;

    // The engine again, on the same data root: it stops what it finds
    // running (its stop signal, 10 s, SIGKILL) before it serves, and then
    // the node's leftovers are swept.
    let clock = Instant::now();
    cluster.sh(&["start-node", &victim.to_string()]).await;
    cluster.wait_ready(Duration::from_secs(30)).await;
    let up = clock.elapsed();
    wait_swept(cluster, &ctl, victim).await;
    for g in &ghosts {
        assert_eq!(processes_in(g), 0, "container {g} still runs");
    }
    say(&format!(
        "{victim_host}'s engine back and Ready {:.1} s after its start; its {} containers gone {:.1} s after that",
        up.as_secs_f64(),
        ghosts.len(),
        (clock.elapsed() - up).as_secs_f64()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_controller_reattaches_sessions_on_every_node() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let mut ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(TICKER).await;
    let sessions = futures_util::future::join_all((0..6).map(|_| ctl.session(&f, &[]))).await;
    let nodes = by_node(&ctl, &sessions).await;
    assert!(nodes.len() >= 2, "all on one node: {nodes:?}");
    let mut before = BTreeMap::new();
    for (token, _) in &sessions {
        before.insert(token.clone(), read_some(&ctl, token, 5).await);
    }
    ctl.kill();
    // The functions go on while no controller reads them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clock = Instant::now();
    ctl.spawn().await;
    let up = clock.elapsed();
    for (token, _) in &sessions {
        let first = &before[token];
        let rest = stop_and_read(&ctl, token, first.last_seq).await;
        let data: Vec<String> = first
            .data_strings()
            .into_iter()
            .chain(rest.data_strings())
            .collect();
        assert!(contiguous(&data, 0) && data.len() > 10, "{data:?}");
        assert_eq!(
            rest.exit.map(|e| e.reason),
            Some(ExitReason::Exited { code: 0 })
        );
    }
    say(&format!(
        "controller SIGKILLed and back in {:.2} s; all 6 sessions on {} nodes resumed and finished",
        up.as_secs_f64(),
        nodes.len()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_takes_no_new_session_and_its_sessions_run_on() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(TICKER).await;
    let sessions = futures_util::future::join_all((0..3).map(|_| ctl.session(&f, &[]))).await;
    let nodes = by_node(&ctl, &sessions).await;
    let drained = (2..=3)
        .find(|i| nodes.contains_key(&cluster.hostname(*i)))
        .unwrap_or_else(|| panic!("no session on a worker: {nodes:?}"));
    let host = cluster.hostname(drained);
    cluster.availability(drained, "drain");
    // The drain has reached the node's tasks once the manager no longer
    // wants any of them running (what it then sends them is the stop
    // signal, which the driver ignores). Only tasks it still wants running
    // are asked for: the node may also list tasks of earlier tests'
    // services, removed but not yet cleaned up, as `Remove`.
    let id = cluster.var(&format!("NODE{drained}_ID")).to_string();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = cluster.docker(
            1,
            &[
                "node",
                "ps",
                &id,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Name}} {{.DesiredState}}",
            ],
        );
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() && text.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "the drain did not reach {host}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its sessions go on after that: each makes 10 more messages.
    let on_drained = &nodes[&host];
    for token in on_drained {
        let at_drain = ctl.info(token).await.last_seq;
        let until = Instant::now() + Duration::from_secs(30);
        while ctl.info(token).await.last_seq < at_drain + 10 {
            assert!(Instant::now() < until, "stopped by the drain");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let more = futures_util::future::join_all((0..6).map(|_| ctl.session(&f, &[]))).await;
    let placed = by_node(&ctl, &more).await;
    say(&format!(
        "after draining {host}, 6 new sessions went to {:?}",
        placed.keys()
    ));
    assert!(
        !placed.contains_key(&host),
        "a session on drained {host}: {placed:?}"
    );

    for (token, _) in sessions.iter().chain(&more) {
        let r = stop_and_read(&ctl, token, 0).await;
        let data = r.data_strings();
        assert!(contiguous(&data, 0), "{data:?}");
        assert_eq!(
            r.exit.map(|e| e.reason),
            Some(ExitReason::Exited { code: 0 })
        );
        if on_drained.contains(token) {
            assert!(data.len() >= 10, "stopped by the drain: {data:?}");
        }
    }
    cluster.availability(drained, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_node_is_lost_and_its_ghost_is_swept_when_it_is_back() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(TICKER).await;
    let sessions = futures_util::future::join_all((0..6).map(|_| ctl.session(&f, &[]))).await;
    let nodes = by_node(&ctl, &sessions).await;
    let cut = (2..=3)
        .find(|i| nodes.contains_key(&cluster.hostname(*i)))
        .unwrap_or_else(|| panic!("no session on a worker: {nodes:?}"));
    let host = cluster.hostname(cut);
    let token = nodes[&host][0].clone();
    let first = read_some(&ctl, &token, 5).await;

    // Nothing dies and nothing refuses: the attach stream would hang.
    let clock = Instant::now();
    cluster.sh(&["isolate-node", &cut.to_string()]).await;
    let reason = wait_ended(&ctl, &token, Duration::from_secs(30)).await;
    assert_eq!(reason, ExitReason::NodeLost { node: host.clone() });
    say(&format!(
        "a session on cut-off {host} ended as node_lost after {:.1} s",
        clock.elapsed().as_secs_f64()
    ));
    let mut att = ctl.attach(&token, first.last_seq).await;
    let rest = receive(&mut att, |_| false).await;
    let data: Vec<String> = first
        .data_strings()
        .into_iter()
        .chain(rest.data_strings())
        .collect();
    assert!(contiguous(&data, 0), "{data:?}");
    // Its output is read: the session is reaped and its service removed
    // while the node is away, so its container there is a ghost.
    let until = Instant::now() + Duration::from_secs(30);
    while ctl.client.session(&token).await.is_ok() {
        assert!(Instant::now() < until, "never reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filter = format!("label={}.session", ctl.prefix);
    let ghosts = cluster.docker(cut, &["ps", "-q", "--filter", &filter]);
    assert!(
        !ghosts.stdout.is_empty(),
        "the ghost should still run on {host}"
    );

    cluster.sh(&["heal-node", &cut.to_string()]).await;
    let clock = Instant::now();
    // The ghost, and the other sessions the node ran: they ended as
    // node_lost, so whatever still runs of them there is killed.
    loop {
        let o = cluster.docker(cut, &["ps", "-q", "--filter", &filter]);
        if o.status.success() && o.stdout.is_empty() {
            break;
        }
        assert!(
            clock.elapsed() < Duration::from_secs(30),
            "ghosts left on {host}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(&format!(
        "its {} containers on {host} were gone {:.1} s after the link came back",
        nodes[&host].len(),
        clock.elapsed().as_secs_f64()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_node_can_take_fails_after_start_timeout_and_leaves_nothing() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    // On every node, but constrained to a label no node has: Swarm keeps
    // its task pending for ever.
    cluster.docker_ok(
        1..=crate::swarm_kit::cluster::NODES,
        &["tag", crate::swarm_kit::IMAGE, "bento/unplaceable:latest"],
    );
    let ctl = Ctl::start_full(
        cluster,
        0,
        &[("unplaceable", &["node.labels.bento.nowhere == true"])],
        "  start_timeout: 3s\n",
    )
    .await;
    // The syntax check at submit runs in the image, so it meets it first.
    let body = bento::wire::api::SubmitFunction {
        code: "send('never')\n".into(),
        name: None,
        image: Some("unplaceable".into()),
        filename: None,
    };
    let clock = Instant::now();
    let refused = ctl.client.submit_function(&body).await;
    let took = clock.elapsed();
    let message = match refused {
        Ok(f) => panic!("submitted {f:?} with no node to run its check"),
        Err(e) => e.to_string(),
    };
    say(&format!(
        "a task no node can take: refused after {:.1} s: {message}",
        took.as_secs_f64()
    ));
    // The client gets an error id; the log has the engine's reason under it.
    assert!(message.contains("error id"), "{message}");
    let log = ctl.log_tail();
    assert!(
        log.contains("no node started it within 3s") && log.contains("constraints"),
        "{log}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        ctl.services("check").await.is_empty(),
        "the check's service is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_restarted_while_a_node_is_down_ends_only_that_nodes_sessions() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let mut ctl = Ctl::start(cluster, 0).await;
    let Tickers {
        sessions,
        victim,
        victim_host,
        lost,
        before,
        ..
    } = Tickers::start(cluster, &ctl, 6).await;
    // The controller goes, then the node, and the controller comes back
    // to a Swarm whose manager says the node is down.
    ctl.kill();
    cluster
        .sh(&["kill-node", &victim.to_string(), "--wait"])
        .await;
    ctl.spawn().await;
    for (token, _) in &sessions {
        let first = &before[token];
        let rest = if lost.contains(token) {
            let reason = wait_ended(&ctl, token, Duration::from_secs(30)).await;
            let want = ExitReason::NodeLost {
                node: victim_host.clone(),
            };
            assert_eq!(reason, want);
            let mut att = ctl.attach(token, first.last_seq).await;
            receive(&mut att, |_| false).await
        } else {
            stop_and_read(&ctl, token, first.last_seq).await
        };
        let data: Vec<String> = first
            .data_strings()
            .into_iter()
            .chain(rest.data_strings())
            .collect();
        assert!(contiguous(&data, 0) && data.len() >= 5, "{data:?}");
        if !lost.contains(token) {
            assert_eq!(
                rest.exit.map(|e| e.reason),
                Some(ExitReason::Exited { code: 0 })
            );
        }
    }
    say(&format!(
        "controller restarted with {victim_host} down: its {} sessions ended as node_lost, the other {} finished",
        lost.len(),
        sessions.len() - lost.len()
    ));
    cluster.sh(&["start-node", &victim.to_string()]).await;
}
