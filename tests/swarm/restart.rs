//! A controller stopped gracefully (SIGTERM), or SIGKILLed, and started
//! again while its clients keep sending: every input reaches its function
//! exactly once, whichever node runs it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bento::wire::api::ExitReason;

use crate::kit::receive;
use crate::swarm_kit::{say, Cluster, Ctl};

const INPUTS: usize = 150;

/// How the controller goes away.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Sigterm,
    Sigkill,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn input_is_exactly_once_across_a_sigterm_restart() {
    exactly_once_across_a_restart(Stop::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn input_is_exactly_once_across_a_sigkill_restart() {
    exactly_once_across_a_restart(Stop::Sigkill).await;
}

async fn exactly_once_across_a_restart(stop: Stop) {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let mut ctl = Ctl::start(cluster, 0).await;
    // WORK with no messages of its own: it echoes each input until `stop`.
    let f = ctl.submit(crate::WORK).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(ctl.session(&f, &["0"]).await);
    }
    let mut nodes = BTreeMap::new();
    for (_, id) in &sessions {
        *nodes.entry(ctl.node_of(id).await).or_insert(0) += 1;
    }
    // Each client sends its inputs, and reads every echo, on its own task;
    // the controller goes away and comes back under them.
    let mut readers = Vec::new();
    for (token, _) in &sessions {
        let mut att = ctl.attach(token, 0).await;
        let input = att.input();
        tokio::spawn(async move {
            for i in 0..INPUTS {
                if input.send(format!("i{i}").into_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = input.send(b"stop".to_vec()).await;
        });
        readers.push(tokio::spawn(
            async move { receive(&mut att, |_| false).await },
        ));
    }
    match stop {
        Stop::Sigterm => ctl.terminate().await,
        Stop::Sigkill => {
            // Mid-stream: each session has echoed some of its inputs.
            let until = Instant::now() + Duration::from_secs(60);
            for (token, _) in &sessions {
                while ctl.info(token).await.last_seq < 20 {
                    assert!(Instant::now() < until, "no progress before the kill");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ctl.kill();
        }
    }
    ctl.spawn().await;
    for (reader, (token, _)) in readers.into_iter().zip(&sessions) {
        let r = reader.await.unwrap_or_else(|e| panic!("reader: {e}"));
        let want: Vec<String> = (0..INPUTS).map(|i| format!("echo i{i}")).collect();
        assert_eq!(
            r.data_strings(),
            want,
            "session {}: ended {:?}, exit {:?}",
            &token[..8],
            r.end,
            r.exit
        );
        assert_eq!(r.stdout, b"done\n");
        assert_eq!(
            r.exit.map(|e| e.reason),
            Some(ExitReason::Exited { code: 0 })
        );
    }
    say(&format!(
        "{stop:?} and restart under {} sending clients on {nodes:?}: every input echoed once",
        sessions.len()
    ));
}
