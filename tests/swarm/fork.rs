//! Fork on the Swarm engine (docs/fork.md): it needs only create and
//! attach, so a fork runs wherever Swarm places it, and answers as its
//! parent would.

use super::*;
use bento::wire::api::{ForkSession, ForkState};

/// Sends `v` and reads its answer.
async fn answer(att: &mut bento::client::Attachment, v: u64) -> String {
    att.input()
        .send(v.to_string().into_bytes())
        .await
        .unwrap_or_else(|e| panic!("input: {e}"));
    let r = receive(att, |r| !r.data.is_empty()).await;
    r.data_strings().pop().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forks_run_on_the_cluster_and_answer_as_their_parent() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let f = ctl.submit(crate::kit::functions::ACCUMULATOR).await;
    let (token, id) = ctl.session(&f, &[]).await;
    let mut p = ctl.attach(&token, 0).await;
    let mut last = String::new();
    for v in 1..=30 {
        last = answer(&mut p, v).await;
    }
    assert_eq!(last, "465");
    p.detach().await;
    let mut nodes = BTreeMap::new();
    *nodes.entry(ctl.node_of(&id).await).or_insert(0) += 1;
    for k in [30u64, 10, 0] {
        let req = ForkSession {
            at_input: Some(k),
            ..ForkSession::default()
        };
        let child = match ctl.client.fork_session(&token, &req).await {
            Ok(c) => c,
            Err(e) => panic!("fork: {e}\n{}", ctl.log_tail()),
        };
        let mut c = ctl.attach(&child.token, 0).await;
        assert_eq!(
            answer(&mut c, 1000).await,
            (k * (k + 1) / 2 + 1000).to_string()
        );
        let info = ctl.info(&child.token).await;
        assert_eq!(info.fork.map(|f| f.state), Some(ForkState::Live));
        *nodes.entry(ctl.node_of(&child.id).await).or_insert(0) += 1;
        c.detach().await;
    }
    say(&format!("a parent and 3 forks ran on {nodes:?}"));
}
