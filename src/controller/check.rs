//! The syntax check at submit: a function whose code does not compile is
//! refused with the line, column and message, instead of failing at every
//! run under a name its author never chose.
//!
//! The check runs the image's own driver in a short-lived container of the
//! function's image, sandboxed exactly like a session (same spec, same
//! limits), with a START that asks it only to compile the code
//! (`{"check": {"code", "filename"}}`, see `docs/driver.md`). Why not a Python parser in
//! Rust: the verdict must be the runtime's. Grammars differ between
//! Python versions (3.12's f-strings parse what 3.11 rejects), an image
//! may carry any 3.11+ interpreter, and `compile()` refuses more than the
//! grammar does (`return` outside a function, `nonlocal` at module level).
//! A parser crate would also add minutes of build on small machines. The
//! price is a container per submit: hundreds of milliseconds.
//! Submitting is rare next to running, so that is paid where it hurts least.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::ImageSpec;
use crate::runtime::{ContainerSpec, OutputChunk, Runtime, RuntimeError};
use crate::wire::api::Stream;
use crate::wire::api::SyntaxProblem;
use crate::wire::driver::{write_frames, CheckStart, Decoder, FromDriver, ToDriver};

/// How long a check may take, container start included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a submit waits for a free check slot before it is refused.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Checks running at once: each is a container.
const MAX_CHECKS: usize = 4;
/// The driver's answer is a short JSON object; more is not the driver.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// The longest message kept from the compiler's error.
const MAX_MESSAGE_CHARS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The code does not compile.
    #[error("{0}")]
    Syntax(SyntaxProblem),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The check could not be carried out (timeout, a broken driver).
    #[error("{0}")]
    Failed(String),
}

pub struct Checker {
    runtime: Arc<dyn Runtime>,
    label: String,
    /// The controller's identity label, so only its own reconcile removes
    /// a check container it left behind.
    controller_label: (String, String),
    slots: Arc<Semaphore>,
    /// Checks run on the controller's tracker, so that shutdown waits for
    /// a check's container to be removed.
    tracker: TaskTracker,
}

impl Checker {
    /// `label_prefix` is the controller's: check containers carry
    /// `PREFIX.check`, so one left behind by a crash is an orphan that
    /// reconcile removes.
    pub fn new(
        runtime: Arc<dyn Runtime>,
        config: &crate::config::Config,
        tracker: TaskTracker,
    ) -> Checker {
        Checker {
            tracker,
            runtime,
            label: check_label(&config.label_prefix),
            controller_label: config.controller_label(),
            slots: Arc::new(Semaphore::new(MAX_CHECKS)),
        }
    }

    /// Compiles `code` under `filename` in a container of `image`.
    pub async fn check(
        &self,
        image: &ImageSpec,
        code: &str,
        filename: &str,
    ) -> Result<(), CheckError> {
        // The code inside "check": a driver from before the check finds no
        // "code", and refuses the START instead of running it.
        let payload = ToDriver::Check(CheckStart::new(code, filename))
            .encode()
            .map_err(|e| CheckError::Failed(e.to_string()))?;
        let short = uuid::Uuid::new_v4().simple().to_string();
        let spec = ContainerSpec::for_image(
            image,
            format!("bento-check-{}", &short[..12]),
            HashMap::from([
                (self.label.clone(), image.name.clone()),
                self.controller_label.clone(),
            ]),
            image.limits.clone(),
        );
        let runtime = self.runtime.clone();
        let slots = self.slots.clone();
        // A task of its own, so that a client hanging up mid-check cannot
        // drop it between creating the container and removing it.
        // The slot is taken here, in the request's own future: a client that
        // hangs up while it waits gives up its place in the queue, and no
        // check runs for it. Only create -> remove is detached.
        let slot = tokio::time::timeout(CHECK_QUEUE_WAIT, slots.acquire_owned())
            .await
            .map_err(|_| {
                CheckError::Failed(format!(
                    "{MAX_CHECKS} syntax checks are running and none ended within \
                     {CHECK_QUEUE_WAIT:?}; try again"
                ))
            })?
            .map_err(|_| CheckError::Failed("the controller is shutting down".into()))?;
        let task = self.tracker.spawn(async move {
            let _slot = slot;
            let container = runtime.create(&spec).await?;
            let answer =
                tokio::time::timeout(CHECK_TIMEOUT, run(&*runtime, &container, &payload)).await;
            if let Err(e) = runtime.remove(&container).await {
                tracing::warn!(%container, error = %e, "cannot remove a check container");
            }
            match answer {
                Ok(answer) => answer,
                Err(_) => Err(CheckError::Failed(format!(
                    "the syntax check took longer than {CHECK_TIMEOUT:?}"
                ))),
            }
        });
        task.await
            .map_err(|e| CheckError::Failed(format!("the syntax check failed: {e}")))?
    }
}

pub fn check_label(label_prefix: &str) -> String {
    format!("{label_prefix}.check")
}

/// Starts the driver, hands it the START, and reads its one DATA message.
async fn run(runtime: &dyn Runtime, container: &str, start: &[Bytes]) -> Result<(), CheckError> {
    let mut io = runtime.attach(container).await?;
    runtime.start(container).await?;
    write_frames(&mut io.input, start)
        .await
        .map_err(|e| CheckError::Failed(format!("cannot hand the code to the driver: {e}")))?;
    let mut decoder = Decoder::new();
    let mut answer = Vec::new();
    let broken = |what: String| CheckError::Failed(format!("the image's driver {what}"));
    while let Some(chunk) = io.output.next().await {
        match chunk? {
            OutputChunk::Stderr(_) => continue,
            OutputChunk::Stdout(bytes) => decoder.feed(bytes),
        }
        while let Some(frame) = decoder
            .next_frame()
            .map_err(|e| broken(format!("wrote a bad frame: {e}")))?
        {
            let end = match FromDriver::try_from(frame) {
                Ok(FromDriver::Output {
                    stream: Stream::Data,
                    end,
                    payload,
                }) => {
                    answer.extend_from_slice(&payload);
                    end
                }
                _ => continue, // READY, CREDIT: nothing to do with the answer
            };
            if answer.len() > MAX_ANSWER_BYTES {
                return Err(broken("answered with too much".into()));
            }
            if end {
                return verdict(&answer).map_err(|e| {
                    broken(format!(
                        "gave an answer this controller does not understand ({e}); \
                         an image built with an older driver? rebuild it"
                    ))
                })?;
            }
        }
    }
    Err(broken(
        "ended without an answer (an image built with an older driver? rebuild it)".into(),
    ))
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Answer {
    Ok { ok: bool },
    Error { error: SyntaxProblem },
}

/// The driver's answer: `Ok(Ok(()))` if the code compiles.
fn verdict(answer: &[u8]) -> Result<Result<(), CheckError>, serde_json::Error> {
    Ok(match serde_json::from_slice::<Answer>(answer)? {
        Answer::Ok { ok: true } => Ok(()),
        Answer::Ok { ok: false } => Err(CheckError::Failed(
            "the image's driver refused the code without saying why".into(),
        )),
        Answer::Error { mut error } => {
            if let Some((cut, _)) = error.message.char_indices().nth(MAX_MESSAGE_CHARS) {
                error.message.truncate(cut);
            }
            Err(CheckError::Syntax(error))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert!(matches!(verdict(br#"{"ok": true}"#), Ok(Ok(()))));
        let err = br#"{"error": {"kind": "SyntaxError", "message": "'(' was never closed", "line": 3, "column": 5}}"#;
        match verdict(err) {
            Ok(Err(CheckError::Syntax(p))) => {
                assert_eq!((p.line, p.column), (Some(3), Some(5)));
                assert_eq!(p.kind, "SyntaxError");
                assert_eq!(
                    p.to_string(),
                    "SyntaxError at line 3, column 5: '(' was never closed"
                );
            }
            other => panic!("{other:?}"),
        }
        let none = br#"{"error": {"kind": "RecursionError", "message": "too deep", "line": null, "column": null}}"#;
        match verdict(none) {
            Ok(Err(CheckError::Syntax(p))) => assert_eq!(p.to_string(), "RecursionError: too deep"),
            other => panic!("{other:?}"),
        }
        assert!(verdict(b"[1]").is_err());
        assert!(verdict(br#"{"ok": false}"#).is_ok_and(|v| matches!(v, Err(CheckError::Failed(_)))));
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(5000);
        let body = serde_json::json!({"error": {"kind": "SyntaxError", "message": long, "line": 1, "column": 1}});
        match verdict(body.to_string().as_bytes()) {
            Ok(Err(CheckError::Syntax(p))) => {
                assert_eq!(p.message.chars().count(), MAX_MESSAGE_CHARS)
            }
            other => panic!("{other:?}"),
        }
    }
}
