//! Ctrl-C during `bento attach`: once detaches, twice within a second stops
//! the function. Through the real binary against a real controller.

mod kit;

use std::time::Duration;

use kit::TestServer;
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(60);

/// Sends `ready`, then waits (bounded) for input nobody sends.
const WAITS: &str = "import time\ndef main():\n    send('ready')\n    time.sleep(300)\n";

fn interrupt(pid: u32) {
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    assert!(matches!(kill, Ok(s) if s.success()), "kill -INT: {kill:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_within_a_second_stops_the_function() {
    let s = TestServer::start().await;
    let f = s.submit(WAITS).await;
    let (token, id) = s.session(&f, &[]).await;
    let mut child = kit::cli_command(&s.url, &["attach", &token[..8], "--no-stdin"])
        .spawn()
        .unwrap_or_else(|e| panic!("spawn bento attach: {e}"));
    let mut stdout =
        BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("stdout"))).lines();
    let mut stderr =
        BufReader::new(child.stderr.take().unwrap_or_else(|| panic!("stderr"))).lines();
    let line = tokio::time::timeout(LIMIT, stdout.next_line()).await;
    assert!(matches!(&line, Ok(Ok(Some(l))) if l == "ready"), "{line:?}");

    let pid = child.id().unwrap_or_else(|| panic!("no pid"));
    interrupt(pid);
    // The second comes once the first was seen, well inside the second.
    let mut said = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, stderr.next_line()).await {
            Ok(Ok(Some(l))) => {
                let asks = l.contains("press Ctrl-C again");
                said.push(l);
                if asks {
                    break;
                }
            }
            other => panic!("no word on the first Ctrl-C: {other:?}, said {said:?}"),
        }
    }
    interrupt(pid);
    while let Ok(Ok(Some(l))) = tokio::time::timeout(LIMIT, stderr.next_line()).await {
        said.push(l);
    }
    let status = tokio::time::timeout(LIMIT, child.wait()).await;
    let code = match status {
        Ok(Ok(st)) => st.code(),
        other => panic!("attach did not exit: {other:?}"),
    };
    assert_eq!(
        code,
        Some(137),
        "the exit of a killed function; said {said:?}"
    );
    let said = said.join("\n");
    assert!(said.contains("stopping the function"), "{said}");
    assert!(
        !said.contains("Ctrl-C detaches"),
        "the first-line notice is for terminals only: {said}"
    );
    // The exit was delivered to this attach, so the session is reaped.
    s.wait_reaped(&token).await;
    assert_eq!(s.containers(&id).await, 0);
    s.stop().await;
}
