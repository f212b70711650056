//! The report: a table of every figure beside its baseline and target,
//! and the `RESULT {json}` line.

use super::*;

pub(super) fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

pub(super) fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// One line of the table.
struct Row {
    name: String,
    bento: String,
    baseline: String,
    ratio: String,
    target: String,
    notes: String,
}

impl Row {
    fn failed(name: String, why: &str) -> Row {
        Row {
            name,
            bento: "null".into(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            notes: format!("not measured: {why}"),
        }
    }

    fn cells(&self) -> [&str; 6] {
        [
            &self.name,
            &self.bento,
            &self.baseline,
            &self.ratio,
            &self.target,
            &self.notes,
        ]
    }
}

fn ratio(bento: &Samples, docker: &Samples) -> Option<f64> {
    bento.median().zip(docker.median()).map(|(b, d)| b / d)
}

fn first_byte_row(r: &Figure<FirstByte>) -> Row {
    let name = "cold first byte (ms)".to_string();
    let f = match r {
        Ok(f) => f,
        Err(e) => return Row::failed(name, e),
    };
    let x = ratio(&f.bento_ms, &f.docker_ms);
    Row {
        name,
        bento: f.bento_ms.describe(0),
        baseline: f.docker_ms.describe(0),
        ratio: fmt_opt(x, 2),
        target: format!("<= 0.75x: {}", verdict(x.is_some_and(|x| x <= 0.75))),
        notes: "create_session -> first byte via attach; docker: spawn -> first stdout byte".into(),
    }
}

fn warm_row(r: &Figure<Warm>, cold: &Figure<FirstByte>) -> Row {
    let name = "warm first byte (ms)".to_string();
    let w = match r {
        Ok(w) => w,
        Err(e) => return Row::failed(name, e),
    };
    let docker = cold.as_ref().ok().and_then(|c| c.docker_ms.median());
    let median = w.bento_ms.median();
    let speedup = docker.zip(median).map(|(d, m)| d / m);
    let met = median.is_some_and(|m| m <= 10.0);
    Row {
        name,
        bento: w.bento_ms.describe(1),
        baseline: docker.map_or("-".into(), |d| format!("docker run {d:.0}")),
        ratio: speedup.map_or("-".into(), |s| format!("{:.3} ({s:.0}x faster)", 1.0 / s)),
        target: format!(
            "<= 10 ms, >= 25x: {}",
            verdict(met && speedup.is_some_and(|s| s >= 25.0))
        ),
        notes: format!(
            "pool of {} refilled between sessions; create_session -> first byte via attach",
            w.pool
        ),
    }
}

fn throughput_row(r: &Figure<Throughput>, plan: &Plan) -> Row {
    let name = format!("throughput (MiB/s), {}", size(plan.stream_bytes));
    let t = match r {
        Ok(t) => t,
        Err(e) => return Row::failed(name, e),
    };
    let x = ratio(&t.bento_mb_s, &t.docker_mb_s);
    let pairs: Vec<String> = t
        .bento_mb_s
        .0
        .iter()
        .zip(&t.docker_mb_s.0)
        .map(|(b, d)| format!("{:.2}", b / d))
        .collect();
    Row {
        name,
        bento: t.bento_mb_s.describe(0),
        baseline: t.docker_mb_s.describe(0),
        ratio: fmt_opt(x, 2),
        target: format!(">= 1.0x: {}", verdict(x.is_some_and(|x| x >= 1.0))),
        notes: format!(
            "64 KiB messages, create -> last byte acked: {} s (CPU: controller {} s, client {} s; {} % spooled); \
             docker run --log-driver none piped to wc -c: {} s (CPU: docker CLI + wc {} s); ratio per pair, in order: {}",
            fmt_opt(t.bento_s.median(), 2),
            fmt_opt(t.controller_cpu_s.median(), 2),
            fmt_opt(t.client_cpu_s.median(), 2),
            fmt_opt(t.spooled_share.median().map(|x| x * 100.0), 0),
            fmt_opt(t.docker_s.median(), 2),
            fmt_opt(t.docker_cli_cpu_s.median(), 2),
            pairs.join(" / ")
        ),
    }
}

/// The same stream as the CLI delivers it (not a target of its own).
fn cli_throughput_row(r: &Figure<Throughput>, plan: &Plan) -> Row {
    let name = format!(
        "  the same via the CLI (MiB/s), {}",
        size(plan.stream_bytes)
    );
    let t = match r {
        Ok(t) => t,
        Err(e) => return Row::failed(name, e),
    };
    Row {
        name,
        bento: t.cli_mb_s.describe(0),
        baseline: t.docker_mb_s.describe(0),
        ratio: fmt_opt(ratio(&t.cli_mb_s, &t.docker_mb_s), 2),
        target: "-".into(),
        notes: format!(
            "bento run --raw piped to wc -c, the CLI a user runs, against the same docker run; CPU bento run + wc {} s",
            fmt_opt(t.cli_cpu_s.median(), 2)
        ),
    }
}

fn reattach_row(r: &Figure<Samples>) -> Row {
    let name = "reattach (ms)".to_string();
    let s = match r {
        Ok(s) => s,
        Err(e) => return Row::failed(name, e),
    };
    Row {
        name,
        bento: s.describe(2),
        baseline: "-".into(),
        ratio: "-".into(),
        target: format!("< 10 ms: {}", verdict(s.median().is_some_and(|m| m < 10.0))),
        notes: "attach + first replayed byte of output produced while detached".into(),
    }
}

fn crowd_row(r: &Figure<Crowd>, plan: &Plan) -> Row {
    let name = format!("{} idle sessions: RSS (MiB)", plan.sessions);
    let c = match r {
        Ok(c) => c,
        Err(e) => return Row::failed(name, e),
    };
    let under = c.rss_mb <= 150.0;
    Row {
        name,
        bento: format!("{:.1}", c.rss_mb),
        baseline: format!("before {:.1}", c.rss_before_mb),
        ratio: format!("+{:.1}", c.rss_mb - c.rss_before_mb),
        target: if plan.sessions == 200 {
            format!("<= 150 MB: {}", verdict(under))
        } else {
            let word = if under { "under" } else { "over" };
            format!("(target is for 200: <= 150 MB; {word})")
        },
        notes: format!(
            "+{:.0} KiB/session; {} attached; CPU {:.1}% of a core over 2 s \
             (resolution {:.1}%); created in {:.1} s, killed+reaped in {:.1} s",
            (c.rss_mb - c.rss_before_mb) * 1024.0 / plan.sessions as f64,
            c.attached,
            c.cpu_pct,
            100.0 / (clock_ticks_per_second() * 2.0),
            c.create_s,
            c.teardown_s
        ),
    }
}

fn detached_row(r: &Figure<Detached>, plan: &Plan) -> Row {
    let name = format!("detached {} unread: RSS (MiB)", size(plan.detached_bytes));
    let d = match r {
        Ok(d) => d,
        Err(e) => return Row::failed(name, e),
    };
    let growth = d.rss_mb - d.idle_rss_mb;
    Row {
        name,
        bento: format!("{:.1}", d.rss_mb),
        baseline: format!("idle {:.1}", d.idle_rss_mb),
        ratio: format!("+{growth:.1}"),
        target: format!("<= 2 MB over idle: {}", verdict(growth <= 2.0)),
        notes: format!(
            "{} pending, {} of it spooled to disk; replayed to a client in {:.1} s",
            size(d.pending_bytes),
            size(d.spooled_bytes),
            d.replay_s
        ),
    }
}

fn idle_row(r: &Figure<f64>) -> Row {
    let name = "idle controller RSS (MiB)".to_string();
    match r {
        Ok(idle) => Row {
            name,
            bento: format!("{idle:.1}"),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            notes: "right after start, nothing run yet".into(),
        },
        Err(e) => Row::failed(name, e),
    }
}

fn cluster_rows(r: &Figure<cluster::ClusterFigures>, local: &Figure<FirstByte>) -> [Row; 2] {
    let first = "Swarm cold first byte (ms)".to_string();
    let rate = "Swarm sessions/s, 1 node vs 3".to_string();
    let c = match r {
        Ok(c) => c,
        Err(e) => return [Row::failed(first, e), Row::failed(rate, e)],
    };
    let x = ratio(&c.first_byte_ms, &c.by_hand_ms);
    let local = local
        .as_ref()
        .ok()
        .and_then(|l| l.bento_ms.median())
        .map_or_else(|| "-".into(), |m| format!("{m:.0}"));
    [
        Row {
            name: first,
            bento: c.first_byte_ms.describe(0),
            baseline: c.by_hand_ms.describe(0),
            ratio: fmt_opt(x, 2),
            target: "-".into(),
            notes: format!(
                "baseline: service create + poll task + attach on its node, by hand; \
                 one host: {local} ms"
            ),
        },
        Row {
            name: rate,
            bento: format!("{:.1} vs {:.1}", c.one_node_per_s, c.all_nodes_per_s),
            baseline: "-".into(),
            ratio: fmt_opt(Some(c.all_nodes_per_s / c.one_node_per_s), 2),
            target: "-".into(),
            notes: format!(
                "{} whole sessions, {} in flight; the nodes share this machine's CPUs",
                c.sessions, c.in_flight
            ),
        },
    ]
}

fn python_rows(r: &Figure<python::PythonFigures>) -> [Row; 2] {
    let stream = "Python library stream (MiB/s)".to_string();
    let first = "Python library warm first byte (ms)".to_string();
    let p = match r {
        Ok(p) => p,
        Err(e) => return [Row::failed(stream, e), Row::failed(first, e)],
    };
    [
        Row {
            name: format!("{stream}, {}", size(p.bytes)),
            bento: format!("{:.0} sync, {:.0} async", p.lib_mib_s, p.async_lib_mib_s),
            baseline: format!("{:.0} (bento run --raw)", p.cli_mib_s),
            ratio: fmt_opt(Some(p.lib_mib_s / p.cli_mib_s), 2),
            target: "-".into(),
            notes: format!(
                "client CPU per GiB: library {:.2} s, CLI {:.2} s",
                p.lib_cpu_s_per_gib, p.cli_cpu_s_per_gib
            ),
        },
        Row {
            name: first,
            bento: format!("{:.1}", p.lib_first_byte_ms),
            baseline: format!("{:.1} (bento run)", p.cli_first_byte_ms),
            ratio: fmt_opt(Some(p.lib_first_byte_ms / p.cli_first_byte_ms), 2),
            target: "-".into(),
            notes: "warm pool of 2; the CLI's figure includes its process start".into(),
        },
    ]
}

fn fork_row(r: &Figure<super::fork::ForkFigures>) -> Row {
    let name = "fork to first answer (ms)".to_string();
    let f = match r {
        Ok(f) => f,
        Err(e) => return Row::failed(name, e),
    };
    Row {
        name,
        bento: f.fork_100_ms.describe(0),
        baseline: format!("{} (fresh run)", f.fresh_ms.describe(0)),
        ratio: fmt_opt(ratio(&f.fork_100_ms, &f.fresh_ms), 2),
        target: "-".into(),
        notes: format!(
            "a parent after 100 inputs; after 1,000: {} ms; cold starts",
            fmt_opt(f.fork_1000_ms.median(), 0)
        ),
    }
}

fn burst_row(r: &Figure<super::burst::BurstFigures>) -> Row {
    let name = "burst: first byte p50 / p99 (ms)".to_string();
    let b = match r {
        Ok(b) => b,
        Err(e) => return Row::failed(name, e),
    };
    let s = &b.shape;
    Row {
        name,
        bento: format!(
            "{} / {} (n={})",
            fmt_opt(b.first_byte_ms.percentile(50.0), 0),
            fmt_opt(b.first_byte_ms.percentile(99.0), 0),
            b.first_byte_ms.0.len()
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: format!("201 or 429, quota held: {}", verdict(b.as_expected())),
        notes: format!(
            "{} concurrent starts in {:.1} s: burst {} started, {} refused (quota {}); \
             calm {} started, {} refused; 201 answered at p50 {} / p99 {} ms, 429 at p50 {} ms; \
             cold starts, POST -> first byte via attach; all removed in {:.1} s, no container left",
            s.requests,
            b.wall_s,
            b.burst.started,
            b.burst.refused,
            s.quota,
            b.calm.started,
            b.calm.refused,
            fmt_opt(b.created_ms.percentile(50.0), 0),
            fmt_opt(b.created_ms.percentile(99.0), 0),
            fmt_opt(b.refused_ms.percentile(50.0), 0),
            b.teardown_s
        ),
    }
}

pub(super) fn print_report(r: &Results) {
    let p = &r.plan;
    let rows = [
        first_byte_row(&r.first_byte),
        warm_row(&r.warm, &r.first_byte),
        throughput_row(&r.throughput, p),
        cli_throughput_row(&r.throughput, p),
        reattach_row(&r.reattach_ms),
        crowd_row(&r.crowd, p),
        detached_row(&r.detached, p),
        idle_row(&r.idle_rss_mb),
    ];
    let [swarm_first, swarm_rate] = cluster_rows(&r.cluster, &r.first_byte);
    let rows = {
        let mut all = Vec::from(rows);
        all.push(swarm_first);
        all.push(swarm_rate);
        all.extend(python_rows(&r.python));
        all.push(fork_row(&r.fork));
        all.push(burst_row(&r.burst));
        all
    };
    let header = Row {
        name: "measurement".into(),
        bento: "bento".into(),
        baseline: "docker / baseline".into(),
        ratio: "ratio".into(),
        target: "target".into(),
        notes: "notes".into(),
    };
    let mut widths = header.cells().map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.cells()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    let rules = widths.map(|w| "-".repeat(w));
    println!();
    println!(
        "Bento e2e ({}): medians, (min-max, n); MiB = 2^20 bytes",
        if p.quick { "quick" } else { "full" }
    );
    line(header.cells());
    line(rules.each_ref().map(String::as_str));
    for row in &rows {
        line(row.cells());
    }
    println!("RESULT {}", result_json(r));
}

fn result_json(r: &Results) -> serde_json::Value {
    let first = r.first_byte.as_ref().ok();
    let tp = r.throughput.as_ref().ok();
    let swarm = r.cluster.as_ref().ok();
    let py = r.python.as_ref().ok();
    let burst = r.burst.as_ref().ok();
    serde_json::json!({
        "cold_first_byte_ms": first.and_then(|f| f.bento_ms.median()),
        "docker_run_ms": first.and_then(|f| f.docker_ms.median()),
        "warm_first_byte_ms": r.warm.as_ref().ok().and_then(|w| w.bento_ms.median()),
        "throughput_mb_s": tp.and_then(|t| t.bento_mb_s.median()),
        "docker_throughput_mb_s": tp.and_then(|t| t.docker_mb_s.median()),
        "reattach_ms": r.reattach_ms.as_ref().ok().and_then(Samples::median),
        "rss_200_sessions_mb": r.crowd.as_ref().ok().map(|c| c.rss_mb),
        "rss_detached_1gb_mb": r.detached.as_ref().ok().map(|d| d.rss_mb),
        "idle_rss_mb": r.idle_rss_mb.as_ref().ok(),
        "swarm_cold_first_byte_ms": swarm.and_then(|c| c.first_byte_ms.median()),
        "swarm_by_hand_first_byte_ms": swarm.and_then(|c| c.by_hand_ms.median()),
        "swarm_sessions_per_s_1_node": swarm.map(|c| c.one_node_per_s),
        "swarm_sessions_per_s_3_nodes": swarm.map(|c| c.all_nodes_per_s),
        "python_lib_mib_s": py.map(|p| p.lib_mib_s),
        "python_cli_mib_s": py.map(|p| p.cli_mib_s),
        "python_lib_first_byte_ms": py.map(|p| p.lib_first_byte_ms),
        "python_cli_first_byte_ms": py.map(|p| p.cli_first_byte_ms),
        "fresh_first_answer_ms": r.fork.as_ref().ok().and_then(|f| f.fresh_ms.median()),
        "fork_100_first_answer_ms": r.fork.as_ref().ok().and_then(|f| f.fork_100_ms.median()),
        "fork_1000_first_answer_ms": r.fork.as_ref().ok().and_then(|f| f.fork_1000_ms.median()),
        "burst_first_byte_p50_ms": burst.and_then(|b| b.first_byte_ms.percentile(50.0)),
        "burst_first_byte_p99_ms": burst.and_then(|b| b.first_byte_ms.percentile(99.0)),
        "burst_started": burst.map(|b| b.started()),
        "burst_refused": burst.map(|b| b.refused()),
    })
}
