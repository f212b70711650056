//! Leases (docs/leases.md) on the Swarm engine: at a session's timeout the
//! function gets SIGTERM through the engine of the node that runs it
//! (`Runtime::signal`), and the kill after `stop_grace` if it goes on.

use super::*;
use bento::wire::api::{CreateSession, LimitsRequest};

/// Catches SIGTERM, saves, and ends.
const SAVER: &str = "import signal, sys, time\n\
def on_term(signum, frame):\n    send('saved')\n    sys.exit(0)\n\
def main():\n    signal.signal(signal.SIGTERM, on_term)\n    send('ready')\n    \
while True:\n        time.sleep(0.1)\n";

/// Ignores SIGTERM: only the kill ends it.
const STUBBORN: &str = "import signal, time\n\
def main():\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    send('ready')\n    \
while True:\n        time.sleep(0.1)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_deadline_the_function_gets_sigterm_on_its_node_then_the_kill() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let ctl = Ctl::start(cluster, 0).await;
    let mut runs = Vec::new();
    for code in [SAVER, STUBBORN] {
        let body = CreateSession {
            function: ctl.submit(code).await,
            limits: LimitsRequest {
                // Room for a slow node to start the function and install
                // its handler before the deadline.
                timeout: Some(Duration::from_secs(8)),
                ..LimitsRequest::default()
            },
            ..CreateSession::default()
        };
        let created = match ctl.client.create_session(&body).await {
            Ok(c) => c,
            Err(e) => panic!("create session: {e}\n{}", ctl.log_tail()),
        };
        runs.push(created);
    }
    let mut got = Vec::new();
    for created in &runs {
        let node = ctl.node_of(&created.id).await;
        let mut att = ctl.attach(&created.token, 0).await;
        let r = receive(&mut att, |r| r.exit.is_some()).await;
        let exit = r.exit.clone().unwrap_or_else(|| panic!("no exit"));
        assert_eq!(exit.reason, ExitReason::Timeout, "{exit:?}");
        assert_eq!(exit.code, 124, "{exit:?}");
        say(&format!(
            "lease on {node}: {:?}, then {}",
            r.data_strings(),
            exit.message
        ));
        got.push(r.data_strings());
    }
    // The handler ran on the node: SIGTERM reached it there.
    assert_eq!(got[0], ["ready", "saved"]);
    assert_eq!(got[1], ["ready"]);
    // Two stopped at their deadline; only the one that ignored SIGTERM was
    // killed when the grace was over.
    let url = ctl.url();
    let stops = kit::metric(&url, "bento_lease_stops_total{reason=\"timeout\"}").await;
    let kills = kit::metric(&url, "bento_lease_kills_total").await;
    assert_eq!((stops, kills), (2.0, 1.0), "{}", ctl.log_tail());
}
