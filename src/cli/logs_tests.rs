//! `watch` against scripted pages: paging, following, and how it ends.

use super::*;
use crate::wire::api::{ExitReason, PageMessage, Stream};
use std::collections::VecDeque;

struct Script {
    answers: VecDeque<Result<OutputPage, ClientError>>,
    asked: Vec<u64>,
}

impl Pages for Script {
    async fn page(&mut self, after: u64) -> Result<OutputPage, ClientError> {
        self.asked.push(after);
        self.answers
            .pop_front()
            .unwrap_or_else(|| Err(ClientError::Protocol("script ran out".into())))
    }
}

fn script(answers: Vec<Result<OutputPage, ClientError>>) -> Script {
    Script {
        answers: answers.into(),
        asked: Vec::new(),
    }
}

fn msg(seq: u64, stream: Stream, end: bool, text: &str) -> PageMessage {
    PageMessage {
        seq,
        stream,
        end,
        text: text.into(),
    }
}

fn page(messages: Vec<PageMessage>, next_after: u64, complete: bool) -> OutputPage {
    OutputPage {
        messages,
        exit: None,
        next_after,
        complete,
    }
}

fn gone() -> Result<OutputPage, ClientError> {
    Err(ClientError::Http {
        status: 404,
        message: "unknown session token".into(),
    })
}

type Captured = Output<Vec<u8>, Vec<u8>>;

async fn run(s: &mut Script, follow: bool, raw: bool) -> (anyhow::Result<WatchEnd>, Captured) {
    let mut o = Output::new(Vec::new(), Vec::new(), raw);
    let end = watch(s, &mut o, follow, Duration::from_millis(1)).await;
    (end, o)
}

#[tokio::test]
async fn pages_until_complete_then_stops() -> anyhow::Result<()> {
    let mut s = script(vec![
        Ok(page(
            vec![
                msg(1, Stream::Data, false, "hel"),
                msg(2, Stream::Data, true, "lo"),
            ],
            2,
            false,
        )),
        Ok(page(
            vec![
                msg(3, Stream::Stdout, true, "printed\n"),
                msg(4, Stream::Stderr, true, "oops\n"),
            ],
            4,
            true,
        )),
    ]);
    let (end, o) = run(&mut s, false, false).await;
    assert_eq!(end?, WatchEnd::CaughtUp);
    assert_eq!(s.asked, [0, 2]);
    let (out, err) = o.into_parts();
    assert_eq!(out, b"hello\nprinted\n");
    assert_eq!(err, b"oops\n");
    Ok(())
}

#[tokio::test]
async fn follow_polls_until_the_exit() -> anyhow::Result<()> {
    let mut last = page(vec![msg(2, Stream::Data, true, "b")], 3, true);
    last.exit = Some(ExitReason::Exited { code: 3 }.into());
    let mut s = script(vec![
        Ok(page(vec![msg(1, Stream::Data, true, "a")], 1, true)),
        Ok(page(vec![], 1, true)),
        Ok(last),
    ]);
    let (end, o) = run(&mut s, true, true).await;
    assert_eq!(end?, WatchEnd::Exit(ExitReason::Exited { code: 3 }.into()));
    assert_eq!(s.asked, [0, 1, 1]);
    assert_eq!(o.into_parts().0, b"ab");
    Ok(())
}

#[tokio::test]
async fn a_session_reaped_while_followed_ends_quietly() -> anyhow::Result<()> {
    let mut s = script(vec![Ok(page(vec![], 5, true)), gone()]);
    let (end, _) = run(&mut s, true, false).await;
    assert_eq!(end?, WatchEnd::Gone);

    // Unknown from the start is an error (with its hint, see hints.rs).
    let mut s = script(vec![gone()]);
    let (end, _) = run(&mut s, true, false).await;
    let e = end.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(e, "unknown session token");
    Ok(())
}

#[tokio::test]
async fn a_page_without_progress_is_an_error_not_a_spin() {
    let mut s = script(vec![Ok(page(vec![], 0, false))]);
    let (end, _) = run(&mut s, true, false).await;
    assert!(end.is_err());
    assert_eq!(s.asked, [0]);
}
