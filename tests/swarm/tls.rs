//! The engines over TLS, as a real deployment runs them: a 2-node cluster
//! of its own whose engines listen with TLS and client verification
//! (`CLUSTER_TLS=1`: a CA, a certificate per node naming its address, a
//! client certificate for the controller).

use bento::runtime::SwarmRuntime;

use crate::swarm_kit::cluster::Separate;
use crate::swarm_kit::{say, swarm_config, Cluster, Ctl};
use crate::{drive_through_detaches, spread, work_output, WORK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_sessions_run_and_plain_tcp_gets_nowhere() {
    let Some((_suite, _turn)) = Cluster::get().await else {
        return;
    };
    // A subnet outside the derived ones (10.213.1-250), so never the suite's.
    let tls = Separate::up(
        "swtls",
        2,
        &[("CLUSTER_TLS", "1"), ("CLUSTER_SUBNET", "10.213.252")],
    )
    .await;
    let cluster = &tls.cluster;
    let cfg = swarm_config(cluster);
    assert!(cfg.cert_path.is_some() && !cfg.allow_plain_tcp);

    // Plain TCP to a TLS engine is an error, at once, not a hang.
    let plain = bento::config::SwarmConfig {
        cert_path: None,
        allow_plain_tcp: true,
        ..cfg.clone()
    };
    match SwarmRuntime::connect(&plain, "observer.invalid").await {
        Ok(_) => panic!("plain TCP reached a TLS engine"),
        Err(e) => say(&format!("plain TCP to a TLS engine: {e}")),
    }

    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(WORK).await;
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let (token, id) = ctl.session(&f, &["20"]).await;
        tokens.push(token);
        ids.push(id);
    }
    let by_node = spread(&ctl, &ids).await;
    say(&format!("over TLS: sessions by node {by_node:?}"));
    for token in &tokens {
        let got = drive_through_detaches(&ctl, token, 20).await;
        assert_eq!(got, work_output(20, &["a0", "a1", "a2", "b0", "b1"]));
    }
}
