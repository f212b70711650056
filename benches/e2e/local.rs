//! The measurements on one Docker engine: cold and warm first byte,
//! throughput, reattach, many idle sessions, and a detached session holding
//! unread output.

use super::baselines::*;
use super::*;

/// Measurement 1: cold first byte: create_session to the first output byte via attach,
/// interleaved with `docker run` to its first byte.
pub(super) async fn measure_first_byte(c: &Controller, plan: &Plan) -> Res<FirstByte> {
    let function = submit(&c.client, "send('x')\n").await?;
    let mut r = FirstByte {
        bento_ms: Samples::default(),
        docker_ms: Samples::default(),
    };
    for i in 0..plan.first_byte_reps {
        let start = Instant::now();
        let token = create(&c.client, &function, &[]).await?;
        let mut att = attach(&c.client, &token).await?;
        within(60, "first byte", first_data_byte(&mut att)).await??;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        r.bento_ms.push(ms);
        // Let it finish and be reaped, so the next one starts on a quiet
        // machine.
        within(60, "drain", drain(att)).await??;
        wait_reaped(&c.client, &token).await?;

        let docker_ms = tokio::task::spawn_blocking(docker_first_byte_ms)
            .await
            .ctx("join")??;
        r.docker_ms.push(docker_ms);
        progress!(
            "first byte {}/{}: bento {ms:.0} ms, docker run {docker_ms:.0} ms",
            i + 1,
            plan.first_byte_reps
        );
    }
    Ok(r)
}

/// One sample from the controller's `/metrics`, by its name with labels.
async fn metric(c: &Controller, name: &str) -> Res<f64> {
    kit::try_metric(&c.url, name).await
}

/// `bento_pool_ready{image="python"}` from the controller's metrics.
async fn pool_ready(c: &Controller) -> Res<u64> {
    kit::try_pool_ready(&c.url).await
}

/// Measurement 1b: warm first byte, on a controller of its own whose
/// python image keeps `pool` containers ready. Before each session the
/// pool is allowed to fill again (not timed), as it would between requests
/// that do not arrive all at once.
pub(super) async fn measure_warm(plan: &Plan) -> Res<Warm> {
    let pool = 2;
    let c = Controller::start(pool).await?;
    let function = submit(&c.client, "send('x')\n").await?;
    let mut r = Warm {
        bento_ms: Samples::default(),
        pool,
    };
    for i in 0..plan.first_byte_reps {
        let deadline = Instant::now() + Duration::from_secs(120);
        while pool_ready(&c).await? < pool as u64 {
            if Instant::now() > deadline {
                return Err(format!("the pool never filled:\n{}", c.log_tail(10)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = Instant::now();
        let token = create(&c.client, &function, &[]).await?;
        let created = start.elapsed().as_secs_f64() * 1000.0;
        let mut att = attach(&c.client, &token).await?;
        let attached = start.elapsed().as_secs_f64() * 1000.0;
        within(60, "first byte", first_data_byte(&mut att)).await??;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        progress!("  created at {created:.1} ms, attached at {attached:.1} ms");
        let info = c.client.session(&token).await.ctx("session")?;
        if !info.warm {
            return Err("a session started cold although the pool was full".into());
        }
        r.bento_ms.push(ms);
        within(60, "drain", drain(att)).await??;
        wait_reaped(&c.client, &token).await?;
        progress!(
            "warm first byte {}/{}: {ms:.1} ms",
            i + 1,
            plan.first_byte_reps
        );
    }
    Ok(r)
}

/// Measurement 2: throughput: `total` bytes as 64 KiB messages, received and acked by
/// the client library; from create_session to the last byte.
async fn bento_throughput(c: &Controller, function: &str, total: u64) -> Res<(f64, f64)> {
    let start = Instant::now();
    let token = create(&c.client, function, &[total.to_string()]).await?;
    let mut att = attach(&c.client, &token).await?;
    let mut got: u64 = 0;
    let receive = async {
        while got < total {
            match att.next().await {
                Some(Event::Output(f)) => {
                    if f.stream == Stream::Data {
                        got += f.bytes.len() as u64;
                    }
                    att.written(f.seq);
                }
                Some(Event::Exit { seq, exit }) => {
                    att.written(seq);
                    return Err(format!("exited after {got} bytes: {}", exit.message));
                }
                Some(Event::Ended(end)) => return Err(format!("ended after {got} bytes: {end:?}")),
                Some(_) => {}
                None => return Err("attachment closed".to_string()),
            }
        }
        Ok(())
    };
    within(600, "receiving the stream", receive).await??;
    let secs = start.elapsed().as_secs_f64();
    within(60, "drain", drain(att)).await??;
    wait_reaped(&c.client, &token).await?;
    Ok((secs, total as f64 / MIB / secs))
}

pub(super) async fn measure_throughput(c: &Controller, plan: &Plan) -> Res<Throughput> {
    let function = submit(
        &c.client,
        "def main(total):\n    b = b'x' * 65536\n    for _ in range(total // 65536):\n        send(b)\n",
    )
    .await?;
    let mut r = Throughput {
        bento_mb_s: Samples::default(),
        docker_mb_s: Samples::default(),
        bento_s: Samples::default(),
        docker_s: Samples::default(),
        controller_cpu_s: Samples::default(),
        spooled_share: Samples::default(),
        client_cpu_s: Samples::default(),
        docker_cli_cpu_s: Samples::default(),
        cli_mb_s: Samples::default(),
        cli_cpu_s: Samples::default(),
    };
    let hz = clock_ticks_per_second();
    for i in 0..plan.stream_reps {
        let ticks = cpu_ticks(c.pid()?)?;
        let spooled = metric(c, "bento_spool_written_bytes_total").await?;
        let client_cpu = own_cpu(libc::RUSAGE_SELF)?;
        let (bs, bm) = bento_throughput(c, &function, plan.stream_bytes).await?;
        let client_cpu = own_cpu(libc::RUSAGE_SELF)? - client_cpu;
        let cpu = (cpu_ticks(c.pid()?)?.saturating_sub(ticks)) as f64 / hz;
        let spooled = metric(c, "bento_spool_written_bytes_total").await? - spooled;
        let share = spooled / plan.stream_bytes as f64;
        r.controller_cpu_s.push(cpu);
        r.spooled_share.push(share);
        r.bento_s.push(bs);
        r.bento_mb_s.push(bm);
        let total = plan.stream_bytes;
        let cli_cpu = own_cpu(libc::RUSAGE_CHILDREN)?;
        let (ds, dm) = tokio::task::spawn_blocking(move || docker_throughput(total))
            .await
            .ctx("join")??;
        let cli_cpu = own_cpu(libc::RUSAGE_CHILDREN)? - cli_cpu;
        r.client_cpu_s.push(client_cpu);
        r.docker_cli_cpu_s.push(cli_cpu);
        r.docker_s.push(ds);
        r.docker_mb_s.push(dm);
        let children = own_cpu(libc::RUSAGE_CHILDREN)?;
        let (url, f) = (c.url.clone(), function.clone());
        let (cs, cm) = tokio::task::spawn_blocking(move || cli_throughput(&url, &f, total))
            .await
            .ctx("join")?
            .map_err(|e| format!("bento run: {e}"))?;
        wait_no_sessions(c).await?;
        let cli_run_cpu = own_cpu(libc::RUSAGE_CHILDREN)? - children;
        r.cli_mb_s.push(cm);
        r.cli_cpu_s.push(cli_run_cpu);
        progress!(
            "  bento run --raw | wc -c: {cs:.2} s ({cm:.0} MiB/s, CPU bento run + wc {cli_run_cpu:.2} s)"
        );
        progress!(
            "throughput {}/{}: bento {bs:.2} s ({bm:.0} MiB/s, CPU controller {cpu:.2} s + client {client_cpu:.2} s, {:.0} % spooled), docker run {ds:.2} s ({dm:.0} MiB/s, CPU docker CLI + wc {cli_cpu:.2} s)",
            i + 1,
            plan.stream_reps,
            share * 100.0
        );
    }
    Ok(r)
}

/// Measurement 3: reattach: a session with output produced while nobody was attached;
/// attach + first replayed byte.
pub(super) async fn measure_reattach(c: &Controller, plan: &Plan) -> Res<Samples> {
    let function = submit(
        &c.client,
        "import time\ndef main():\n    send('x' * 100)\n    time.sleep(600)\n",
    )
    .await?;
    let mut samples = Samples::default();
    for i in 0..plan.reattach_reps {
        let token = create(&c.client, &function, &[]).await?;
        let result = async {
            wait_session(&c.client, &token, "pending output", 60, |s| {
                s.pending_messages > 0
            })
            .await?;
            let start = Instant::now();
            let mut att = attach(&c.client, &token).await?;
            within(30, "replayed byte", first_data_byte(&mut att)).await??;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            Ok::<_, String>((ms, att))
        }
        .await;
        let (ms, att) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = kill_and_reap(&c.client, &token, None).await;
                return Err(e);
            }
        };
        samples.push(ms);
        progress!("reattach {}/{}: {ms:.2} ms", i + 1, plan.reattach_reps);
        kill_and_reap(&c.client, &token, Some(att)).await?;
    }
    Ok(samples)
}

/// Measurement 4: many idle sessions, half of them attached: the controller's RSS and
/// CPU. Then all are killed and reaped.
pub(super) async fn measure_crowd(c: &Controller, plan: &Plan) -> Res<Crowd> {
    let function = submit(&c.client, "import time\ndef main(s):\n    time.sleep(s)\n").await?;
    let arg = vec![IDLE_SLEEP_S.to_string()];
    let rss_before_mb = c.rss_mb()?;
    let start = Instant::now();
    let created: Vec<Res<String>> = stream::iter(0..plan.sessions)
        .map(|_| create(&c.client, &function, &arg))
        .buffer_unordered(8)
        .collect()
        .await;
    let create_s = start.elapsed().as_secs_f64();
    let mut tokens = Vec::new();
    let mut failures = Vec::new();
    for r in created {
        match r {
            Ok(t) => tokens.push(t),
            Err(e) => failures.push(e),
        }
    }
    progress!(
        "{} sessions created in {create_s:.1} s ({} failed)",
        tokens.len(),
        failures.len()
    );
    let measured = async {
        if let Some(e) = failures.first() {
            return Err(format!(
                "{} of {} creates failed: {e}",
                failures.len(),
                plan.sessions
            ));
        }
        let half = tokens.len() / 2;
        let mut atts = Vec::new();
        for t in &tokens[..half] {
            atts.push(attach(&c.client, t).await?);
        }
        let sessions = c.client.list_sessions().await.ctx("list sessions")?;
        let running = sessions
            .iter()
            .filter(|s| s.state == SessionState::Running && tokens.contains(&s.token))
            .count();
        if running != tokens.len() {
            return Err(format!(
                "only {running} of {} sessions running",
                tokens.len()
            ));
        }
        // Let the attaches settle before sampling.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = c.rss_mb()?;
        let cpu = cpu_percent(c.pid()?, Duration::from_secs(2)).await?;
        progress!(
            "{} sessions ({half} attached): RSS {rss:.1} MiB, CPU {cpu:.1}%",
            tokens.len()
        );
        Ok((rss, cpu, atts))
    }
    .await;
    // Tear down whatever was created, measured or not.
    let teardown = Instant::now();
    let (mut atts, result) = match measured {
        Ok((rss, cpu, atts)) => (atts, Ok((rss, cpu))),
        Err(e) => (Vec::new(), Err(e)),
    };
    let attached = atts.len();
    // The attached ones are the first half of `tokens`.
    let mut atts = atts.drain(..);
    let with_att: Vec<(String, Option<Attachment>)> =
        tokens.iter().map(|t| (t.clone(), atts.next())).collect();
    drop(atts);
    let reaped: Vec<Res<()>> = stream::iter(with_att)
        .map(|(t, a)| async move { kill_and_reap(&c.client, &t, a).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let teardown_s = teardown.elapsed().as_secs_f64();
    let errors: Vec<&String> = reaped.iter().filter_map(|r| r.as_ref().err()).collect();
    progress!(
        "{} sessions killed and reaped in {teardown_s:.1} s ({} errors)",
        tokens.len(),
        errors.len()
    );
    let (rss_mb, cpu_pct) = result?;
    if let Some(e) = errors.first() {
        return Err(format!("teardown: {} errors, first: {e}", errors.len()));
    }
    Ok(Crowd {
        rss_before_mb,
        rss_mb,
        cpu_pct,
        create_s,
        attached,
        teardown_s,
    })
}

/// Measurement 5: one detached session holding `total` bytes of unread output.
pub(super) async fn measure_detached(c: &Controller, plan: &Plan) -> Res<Detached> {
    let function = submit(
        &c.client,
        "import time\ndef main(total):\n    b = b'x' * 65536\n    for _ in range(total // 65536):\n        send(b)\n    time.sleep(600)\n",
    )
    .await?;
    let idle_rss_mb = c.rss_mb()?;
    let total = plan.detached_bytes;
    let token = create(&c.client, &function, &[total.to_string()]).await?;
    let result = async {
        let info = wait_session(&c.client, &token, "all output pending", 600, |s| {
            s.pending_bytes >= total || s.state != SessionState::Running
        })
        .await?;
        if info.pending_bytes < total {
            return Err(format!(
                "session ended with {} of {total} bytes pending",
                info.pending_bytes
            ));
        }
        // Give the controller a moment to settle (spool writes, buffers).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_mb = c.rss_mb()?;
        let info = c.client.session(&token).await.ctx("session")?;
        progress!(
            "detached {:.0} MiB pending ({:.0} MiB spooled): RSS {rss_mb:.1} MiB (idle {idle_rss_mb:.1} MiB)",
            info.pending_bytes as f64 / MIB,
            info.spooled_bytes as f64 / MIB
        );
        Ok(Detached {
            idle_rss_mb,
            rss_mb,
            pending_bytes: info.pending_bytes,
            spooled_bytes: info.spooled_bytes,
            replay_s: 0.0,
        })
    }
    .await;
    // Kill it and read everything back (from the spool), so the session is
    // reaped and the controller is clean for what follows; the time it
    // takes is the replay rate of spooled output.
    let replay = Instant::now();
    let cleanup = kill_and_reap(&c.client, &token, None).await;
    let replay_s = replay.elapsed().as_secs_f64();
    let mut r = result?;
    cleanup?;
    r.replay_s = replay_s;
    progress!("killed and replayed to the end in {replay_s:.2} s");
    Ok(r)
}
