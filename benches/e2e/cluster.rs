//! The cluster part: Bento on a 3-node Swarm made on this machine by
//! `tests/cluster/cluster.sh` (the test suite's harness, under a cluster
//! name of its own).
//!
//! - cold first byte on Swarm, next to the same by hand: a one-task
//!   service made through the API, its task polled for until it has a
//!   container, then attached on its node (the least a client of Swarm
//!   must do to talk to a function), and next to the local figure;
//! - sustained sessions per second, each a whole session (create, attach,
//!   output, exit, reaped), with a fixed number in flight, on 1 node (a
//!   placement constraint) and on all 3.
//!
//! The nodes share this machine's 2 cores with the controller, the manager
//! and each other, so 3 nodes are not 3 times the CPU: the ratio says how
//! much spreading costs or gains in scheduling and attach work, not what 3
//! real machines would give.

use super::*;
use bollard::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{AttachContainerOptionsBuilder, ListTasksOptionsBuilder};
use bollard::Docker;
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

use crate::swarm_kit::cluster::{self, NODES};
use crate::swarm_kit::{Cluster, Ctl};

#[derive(Debug, Clone)]
pub(super) struct ClusterFigures {
    pub first_byte_ms: Samples,
    pub by_hand_ms: Samples,
    pub one_node_per_s: f64,
    pub all_nodes_per_s: f64,
    pub sessions: usize,
    pub in_flight: usize,
}

/// The cluster part, or why it could not run. A failure inside (the test
/// kit panics on one) is caught and reported as the reason.
pub(super) async fn measure(plan: &Plan) -> Figure<ClusterFigures> {
    if let Some(why) = cluster::missing() {
        return Err(format!("skipped: {why}"));
    }
    cluster::set_name("bnc");
    let plan = plan.clone();
    match tokio::spawn(async move { measure_on_cluster(&plan).await }).await {
        Ok(r) => r,
        Err(e) => Err(format!("failed: {e}")),
    }
}

async fn measure_on_cluster(plan: &Plan) -> Res<ClusterFigures> {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return Err("the cluster could not be made".into());
    };
    let reps = plan.first_byte_reps;
    let (sessions, in_flight) = if plan.quick { (12, 4) } else { (60, 6) };
    // The 1-node image: python's, pinned to node 1.
    let pinned = format!("node.hostname == {}", cluster.hostname(1));
    cluster.docker_ok([1], &["tag", IMAGE, "bento/one:latest"]);
    let ctl = Ctl::start_with(cluster, 0, &[("one", &[pinned.as_str()])]).await;

    progress!("cluster: cold first byte, Bento on Swarm and by hand");
    let function = submit(&ctl.client, "send('x')\n").await?;
    let mut first_byte_ms = Samples::default();
    let mut by_hand_ms = Samples::default();
    for i in 0..reps {
        let start = Instant::now();
        let token = create(&ctl.client, &function, &[]).await?;
        let mut att = attach(&ctl.client, &token).await?;
        within(60, "first byte", first_data_byte(&mut att)).await??;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        first_byte_ms.push(ms);
        within(60, "drain", drain(att)).await??;
        wait_reaped(&ctl.client, &token).await?;
        let hand = within(60, "by hand", by_hand(cluster, i)).await??;
        by_hand_ms.push(hand);
        progress!(
            "cluster first byte {}/{reps}: bento {ms:.0} ms, by hand {hand:.0} ms",
            i + 1
        );
    }

    progress!("cluster: {sessions} sessions, {in_flight} in flight, on 1 node then on {NODES}");
    let one = submit_on(&ctl.client, "one").await?;
    let one_node_per_s = rate(&ctl.client, &one, sessions, in_flight).await?;
    let all_nodes_per_s = rate(&ctl.client, &function, sessions, in_flight).await?;
    progress!("cluster: {one_node_per_s:.1} sessions/s on 1 node, {all_nodes_per_s:.1} on {NODES}");
    drop(ctl);
    Ok(ClusterFigures {
        first_byte_ms,
        by_hand_ms,
        one_node_per_s,
        all_nodes_per_s,
        sessions,
        in_flight,
    })
}

async fn submit_on(client: &Client, image: &str) -> Res<String> {
    let body = bento::wire::api::SubmitFunction {
        code: "send('x')\n".into(),
        name: None,
        image: Some(image.into()),
        filename: None,
    };
    client
        .submit_function(&body)
        .await
        .map(|f| f.id)
        .map_err(|e| format!("submit: {e}"))
}

/// Whole sessions per second, `in_flight` at a time.
async fn rate(client: &Client, function: &str, total: usize, in_flight: usize) -> Res<f64> {
    let start = Instant::now();
    let results: Vec<Res<()>> = stream::iter(0..total)
        .map(|_| async move {
            let token = create(client, function, &[]).await?;
            let att = attach(client, &token).await?;
            within(120, "drain", drain(att)).await??;
            wait_reaped(client, &token).await
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Milliseconds from `POST /services/create` to the first byte of the
/// function's output, done by hand: the service opens stdin, its task is
/// polled for every 10 ms until it runs in a container, which is attached
/// on its node; the function writes once it reads a byte (so nothing is
/// written before the attach).
async fn by_hand(cluster: &Cluster, i: usize) -> Res<f64> {
    let manager = connect(cluster.manager()).await?;
    let spec = ServiceSpec {
        name: Some(format!("bench-by-hand-{i}-{}", std::process::id())),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE.into()),
                command: Some(vec![
                    "python3".into(),
                    "-c".into(),
                    "import sys; sys.stdin.read(1); sys.stdout.write('x'); sys.stdout.flush()"
                        .into(),
                ]),
                open_stdin: Some(true),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let start = Instant::now();
    let service = manager
        .create_service(spec, None)
        .await
        .ctx("create service")?
        .id
        .ok_or("a service without an id")?;
    let measured = attach_and_read(cluster, &manager, &service).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let removed = manager.delete_service(&service).await;
    measured?;
    removed.ctx("remove service")?;
    Ok(ms)
}

async fn attach_and_read(cluster: &Cluster, manager: &Docker, service: &str) -> Res<()> {
    let filters = HashMap::from([("service", vec![service])]);
    let (node, container) = loop {
        let opts = ListTasksOptionsBuilder::new().filters(&filters).build();
        let tasks = manager.list_tasks(Some(opts)).await.ctx("list tasks")?;
        let placed = tasks.into_iter().find_map(|t| {
            let running = t.status.as_ref()?.state.as_ref()?.to_string() == "running";
            let id = t.status?.container_status?.container_id?;
            running.then_some((t.node_id?, id))
        });
        if let Some(p) = placed {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let endpoint = (1..=NODES)
        .find(|i| cluster.var(&format!("NODE{i}_ID")) == node)
        .map(|i| cluster.var(&format!("NODE{i}_ENDPOINT")).to_string())
        .ok_or("the task's node is not the cluster's")?;
    let docker = connect(&endpoint).await?;
    let opts = AttachContainerOptionsBuilder::new()
        .stdin(true)
        .stdout(true)
        .stream(true)
        .build();
    let mut io = docker
        .attach_container(&container, Some(opts))
        .await
        .ctx("attach")?;
    io.input.write_all(b"g").await.ctx("write")?;
    io.input.flush().await.ctx("flush")?;
    while let Some(item) = io.output.next().await {
        if !item.ctx("read")?.into_bytes().is_empty() {
            return Ok(());
        }
    }
    Err("the attach ended before any output".into())
}

async fn connect(endpoint: &str) -> Res<Docker> {
    Docker::connect_with_http(endpoint, 30, bollard::API_DEFAULT_VERSION)
        .ctx("connect")?
        .negotiate_version()
        .await
        .ctx("negotiate")
}
