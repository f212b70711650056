//! A burst of two tenants (issue 23, docs/tenants.md): 100 concurrent
//! starts, 70 from the tenant `burst`, whose quota is 60 sessions at once,
//! and 30 from `calm`, which has none, on a controller of its own. Every
//! start must get a session (201) or a 429 that names the quota, within a
//! deadline. Measured: the first output byte of each session that started,
//! from just before its `POST /v1/sessions`, and the wall time of the whole
//! burst. Then every session is killed and removed, and no container of
//! that controller may be left. The model is the burst test of
//! tests/tenant_quotas.rs.

use super::*;
use bento::runtime::{DockerRuntime, Runtime};
use bento::wire::api::NewKey;

/// The operator's key: with keys configured, every request needs one.
const OPERATOR: &str = "bench-operator-key-0123456789abcdef";
/// Sends one message at once, then waits for input until it is killed.
const FUNCTION: &str = "def main():\n    send(b'ready')\n    recv()\n";
/// The tenant with the quota, and the one without.
const BURST: &str = "burst";
const CALM: &str = "calm";
/// No start, with its attach and first byte, may take longer than this.
const DEADLINE_S: u64 = 300;

/// The size of the burst.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// Concurrent starts in all.
    pub requests: usize,
    /// Of every ten, how many come from `burst` (the rest from `calm`).
    pub burst_in_ten: usize,
    /// `burst`'s quota of sessions at once.
    pub quota: usize,
}

impl Shape {
    /// The burst, in full and in --quick alike.
    pub(super) fn new(_quick: bool) -> Shape {
        Shape {
            requests: 100,
            burst_in_ten: 7,
            quota: 60,
        }
    }

    fn tenant_of(&self, i: usize) -> &'static str {
        if i % 10 < self.burst_in_ten {
            BURST
        } else {
            CALM
        }
    }

    fn sent_by(&self, tenant: &str) -> usize {
        (0..self.requests)
            .filter(|&i| self.tenant_of(i) == tenant)
            .count()
    }
}

/// One tenant's answers.
#[derive(Debug, Clone, Default)]
pub(super) struct Answers {
    pub sent: usize,
    /// 201: a session, which then sent its first byte.
    pub started: usize,
    /// 429 naming the `sessions` quota.
    pub refused: usize,
}

#[derive(Debug, Clone)]
pub(super) struct BurstFigures {
    pub shape: Shape,
    /// From just before the POST to the first output byte, per session
    /// that started.
    pub first_byte_ms: Samples,
    /// From just before the POST to its 201 (the container has started).
    pub created_ms: Samples,
    /// From just before the POST to the 429, per start refused.
    pub refused_ms: Samples,
    pub burst: Answers,
    pub calm: Answers,
    /// From the first POST to the last first byte or 429.
    pub wall_s: f64,
    /// Killing and removing every session, until no container was left.
    pub teardown_s: f64,
}

impl BurstFigures {
    pub(super) fn started(&self) -> usize {
        self.burst.started + self.calm.started
    }

    pub(super) fn refused(&self) -> usize {
        self.burst.refused + self.calm.refused
    }

    /// What the quota should give: `burst` exactly its quota and a 429 for
    /// the rest, `calm` all it asked for.
    pub(super) fn as_expected(&self) -> bool {
        let wanted = self.shape.sent_by(BURST);
        self.burst.started == self.shape.quota.min(wanted)
            && self.burst.refused == wanted.saturating_sub(self.shape.quota)
            && self.calm.started == self.calm.sent
            && self.calm.refused == 0
    }
}

/// What one start came to.
enum Outcome {
    Started {
        token: String,
        created_ms: f64,
        ms: f64,
    },
    Refused {
        ms: f64,
    },
}

/// `bento ARGS --data-dir DIR`, offline, before the controller starts;
/// its stdout.
async fn offline_cli(args: &[&str]) -> Res<String> {
    let mut cmd = kit::cli_command("http://127.0.0.1:9", args);
    let what = format!("bento {}", args.join(" "));
    let out = within(60, &what, cmd.output()).await?.ctx(&what)?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A controller with the two tenants and `burst`'s quota; their keys.
async fn controller(shape: Shape) -> Res<(kit::controller::Controller, String, String)> {
    let setup = Setup {
        prefix: Some(kit::unique_prefix("bench")),
        warm: 0,
        extra: format!(
            "api_key: {OPERATOR}\nmax_sessions: 200\ntenants:\n  {BURST}:\n    quotas: {{sessions: {}}}\n",
            shape.quota
        ),
        env: vec![("RUST_LOG".into(), "warn".into())],
    };
    let mut ctl = kit::controller::Controller::in_temp_dir("bento-bench-burst-", setup)?;
    ctl.thorough_cleanup = true;
    let data = ctl.dir.join("data");
    std::fs::create_dir_all(&data).ctx("data dir")?;
    let d = data.display().to_string();
    let mut keys = Vec::new();
    for t in [BURST, CALM] {
        offline_cli(&["tenants", "add", t, "--data-dir", &d]).await?;
        let json =
            offline_cli(&["keys", "create", "--tenant", t, "--json", "--data-dir", &d]).await?;
        let key: NewKey = serde_json::from_str(&json).ctx("the key `bento keys create` printed")?;
        keys.push(key.key);
    }
    let calm = keys.pop().ok_or("no key for calm")?;
    let burst = keys.pop().ok_or("no key for burst")?;
    ctl.try_start().await?;
    Ok((ctl, burst, calm))
}

/// One start: `POST /v1/sessions`, then, if it is a 201, attach and wait
/// for the first byte; a 429 must name the quota and say when to retry.
async fn one(http: reqwest::Client, client: Client, url: String, function: String) -> Res<Outcome> {
    let start = Instant::now();
    let resp = http
        .post(format!("{url}/v1/sessions"))
        .json(&serde_json::json!({ "function": function }))
        .send()
        .await
        .ctx("POST /v1/sessions")?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = resp.text().await.ctx("reading the answer")?;
    match status {
        201 => {
            let v: serde_json::Value = serde_json::from_str(&body).ctx("the 201's body")?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| format!("a 201 without a token: {body}"))?
                .to_string();
            let created_ms = start.elapsed().as_secs_f64() * 1000.0;
            let mut att = attach(&client, &token).await?;
            first_data_byte(&mut att).await?;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            att.detach().await;
            Ok(Outcome::Started {
                token,
                created_ms,
                ms,
            })
        }
        429 => {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let v: serde_json::Value = serde_json::from_str(&body).ctx("the 429's body")?;
            if v["quota"] != "sessions" || retry_after.is_none() {
                return Err(format!(
                    "a 429 that does not name the sessions quota or lacks Retry-After: {body}"
                ));
            }
            Ok(Outcome::Refused { ms })
        }
        other => Err(format!("POST /v1/sessions answered {other}: {body}")),
    }
}

/// Containers under `prefix` of every kind a controller makes (sessions,
/// warm pool, syntax checks).
async fn containers_left(prefix: &str) -> Res<usize> {
    let rt = DockerRuntime::connect(None).await.ctx("docker")?;
    let mut n = 0;
    for kind in kit::docker::KINDS {
        n += rt
            .list(&format!("{prefix}.{kind}"))
            .await
            .ctx("docker list")?
            .len();
    }
    Ok(n)
}

/// Kills a session, waits for its end and removes it, container and all.
async fn kill_and_remove(client: &Client, token: &str) -> Res<()> {
    client.kill_session(token).await.ctx("kill")?;
    wait_session(client, token, "its end", 60, |i| {
        i.state == SessionState::Ended
    })
    .await?;
    client.remove_session(token).await.ctx("remove")
}

pub(super) async fn measure(plan: &Plan) -> Figure<BurstFigures> {
    let shape = Shape::new(plan.quick);
    let (mut ctl, burst_key, calm_key) = controller(shape).await?;
    let url = ctl.url();
    let burst = Client::new(&url, Some(burst_key.clone())).ctx("client")?;
    let calm = Client::new(&url, Some(calm_key.clone())).ctx("client")?;
    let fb = submit(&burst, FUNCTION).await?;
    let fc = submit(&calm, FUNCTION).await?;
    let http = |key: &str| -> Res<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        let auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .ctx("the key as a header")?;
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .ctx("HTTP client")
    };
    let (burst_http, calm_http) = (http(&burst_key)?, http(&calm_key)?);
    progress!(
        "burst: {} concurrent starts, {} of every 10 from `{BURST}` (quota {} sessions), the rest from `{CALM}`",
        shape.requests,
        shape.burst_in_ten,
        shape.quota
    );
    let fired = Instant::now();
    let tasks: Vec<_> = (0..shape.requests)
        .map(|i| {
            let t = shape.tenant_of(i);
            let (h, c, f) = if t == BURST {
                (burst_http.clone(), burst.clone(), fb.clone())
            } else {
                (calm_http.clone(), calm.clone(), fc.clone())
            };
            let url = url.clone();
            let task = tokio::spawn(within(
                DEADLINE_S,
                "a start in the burst",
                one(h, c, url, f),
            ));
            (t, task)
        })
        .collect();
    let mut r = BurstFigures {
        shape,
        first_byte_ms: Samples::default(),
        created_ms: Samples::default(),
        refused_ms: Samples::default(),
        burst: Answers::default(),
        calm: Answers::default(),
        wall_s: 0.0,
        teardown_s: 0.0,
    };
    let mut tokens: Vec<(&str, String)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (t, task) in tasks {
        let answers = if t == BURST {
            &mut r.burst
        } else {
            &mut r.calm
        };
        answers.sent += 1;
        match task.await {
            Ok(Ok(Ok(Outcome::Started {
                token,
                created_ms,
                ms,
            }))) => {
                answers.started += 1;
                r.created_ms.push(created_ms);
                r.first_byte_ms.push(ms);
                tokens.push((t, token));
            }
            Ok(Ok(Ok(Outcome::Refused { ms }))) => {
                answers.refused += 1;
                r.refused_ms.push(ms);
            }
            Ok(Ok(Err(e)) | Err(e)) => failures.push(format!("{t}: {e}")),
            Err(e) => failures.push(format!("{t}: the task failed: {e}")),
        }
    }
    r.wall_s = fired.elapsed().as_secs_f64();
    progress!(
        "burst: {} started, {} refused ({BURST}: {}/{}, {CALM}: {}/{}) in {:.1} s; first byte p50 {} ms, p99 {} ms",
        r.started(),
        r.refused(),
        r.burst.started,
        r.burst.refused,
        r.calm.started,
        r.calm.refused,
        r.wall_s,
        report::fmt_opt(r.first_byte_ms.percentile(50.0), 0),
        report::fmt_opt(r.first_byte_ms.percentile(99.0), 0),
    );
    // Every session goes, the failed run's too; the controller's drop
    // sweeps whatever this leaves.
    let teardown = Instant::now();
    let removed: Vec<Res<()>> = stream::iter(tokens.iter())
        .map(|(t, token)| {
            let c = if *t == BURST { &burst } else { &calm };
            within(
                120,
                "killing and removing a session",
                kill_and_remove(c, token),
            )
        })
        .buffer_unordered(8)
        .map(|done| done.and_then(|removed| removed))
        .collect()
        .await;
    failures.extend(removed.into_iter().filter_map(Result::err));
    if !failures.is_empty() {
        let n = failures.len();
        failures.truncate(5);
        return Err(format!(
            "{n} of the burst's starts or removals failed; the first: {}",
            failures.join("; ")
        ));
    }
    for c in [&burst, &calm] {
        let held = c.list_sessions().await.ctx("list sessions")?;
        if !held.is_empty() {
            return Err(format!("{} session(s) left after removal", held.len()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = containers_left(&ctl.prefix).await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{left} container(s) of the burst's controller (label {}) left 60 s after every session was removed",
                ctl.prefix
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.teardown_s = teardown.elapsed().as_secs_f64();
    ctl.stop();
    Ok(r)
}
