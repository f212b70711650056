//! Fork latency (docs/fork.md): from `POST …/fork` to the fork's answer to
//! its first input, for parents that have taken 100 and 1,000 inputs,
//! against a fresh run of the same function to its first answer. Cold
//! starts, interleaved, on the main controller.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct ForkFigures {
    /// A new session to its first answer.
    pub fresh_ms: Samples,
    /// A fork of a parent that took 100 inputs, to its first answer.
    pub fork_100_ms: Samples,
    /// The same after 1,000 inputs.
    pub fork_1000_ms: Samples,
}

/// Sends `v` and waits for the answer; returns it.
async fn answer(att: &mut Attachment, v: u64) -> Res<String> {
    att.input()
        .send(v.to_string().into_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    while let Some(ev) = att.next().await {
        match ev {
            Event::Output(f) => {
                att.written(f.seq);
                if f.stream == Stream::Data {
                    return Ok(String::from_utf8_lossy(&f.bytes).into_owned());
                }
            }
            Event::Exit { exit, .. } => return Err(format!("exited: {}", exit.message)),
            Event::Ended(end) => return Err(format!("attachment ended: {end:?}")),
            _ => {}
        }
    }
    Err("attachment closed".into())
}

/// A parent that has answered inputs `1..=n`, detached.
async fn parent(c: &Controller, function: &str, n: u64) -> Res<String> {
    let token = create(&c.client, function, &[]).await?;
    let mut att = attach(&c.client, &token).await?;
    let input = att.input();
    for v in 1..=n {
        input
            .send(v.to_string().into_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let want = (n * (n + 1) / 2).to_string();
    within(120, "the parent's answers", async {
        loop {
            match att.next().await {
                Some(Event::Output(f)) => {
                    att.written(f.seq);
                    if f.bytes.as_ref() == want.as_bytes() {
                        return Ok(());
                    }
                }
                Some(Event::Ended(end)) => return Err(format!("parent ended: {end:?}")),
                None => return Err("parent closed".to_string()),
                _ => {}
            }
        }
    })
    .await??;
    att.detach().await;
    Ok(token)
}

/// Times one fork of `parent` to its first answer, and kills it.
async fn one_fork(c: &Controller, parent: &str, n: u64) -> Res<f64> {
    let start = Instant::now();
    let created = c
        .client
        .fork_session(parent, &Default::default())
        .await
        .ctx("fork")?;
    let mut att = attach(&c.client, &created.token).await?;
    let got = within(120, "the fork's answer", answer(&mut att, 1)).await??;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let want = (n * (n + 1) / 2 + 1).to_string();
    if got != want {
        return Err(format!("the fork answered {got}, not {want}"));
    }
    kill_and_reap(&c.client, &created.token, Some(att)).await?;
    Ok(ms)
}

pub(super) async fn measure(c: &Controller, plan: &Plan) -> Figure<ForkFigures> {
    let function = submit(&c.client, crate::kit::functions::ACCUMULATOR).await?;
    let reps = if plan.quick { 3 } else { 10 };
    let p100 = parent(c, &function, 100).await?;
    let p1000 = parent(c, &function, 1000).await?;
    let mut r = ForkFigures {
        fresh_ms: Samples::default(),
        fork_100_ms: Samples::default(),
        fork_1000_ms: Samples::default(),
    };
    for i in 0..reps {
        let start = Instant::now();
        let token = create(&c.client, &function, &[]).await?;
        let mut att = attach(&c.client, &token).await?;
        within(120, "a fresh answer", answer(&mut att, 1)).await??;
        let fresh = start.elapsed().as_secs_f64() * 1000.0;
        r.fresh_ms.push(fresh);
        kill_and_reap(&c.client, &token, Some(att)).await?;
        let f100 = one_fork(c, &p100, 100).await?;
        r.fork_100_ms.push(f100);
        let f1000 = one_fork(c, &p1000, 1000).await?;
        r.fork_1000_ms.push(f1000);
        progress!(
            "fork {}/{reps}: fresh {fresh:.0} ms, fork after 100 inputs {f100:.0} ms, after 1000 {f1000:.0} ms",
            i + 1
        );
    }
    for t in [p100, p1000] {
        kill_and_reap(&c.client, &t, None).await?;
    }
    Ok(r)
}
