//! Tenant quotas against the real Docker engine, through a real `bento
//! serve`: each quota reached and refused with a 429 that names it and
//! carries `RateLimit-*` and `Retry-After`, while another tenant is
//! unaffected; the figures in `/metrics` and the audit log; and a burst of
//! 100 concurrent starts from two tenants against a quota of 60, where
//! every request gets a session or a clear 429 and no container is left;
//! and ten concurrent submits against a functions quota of three.

mod kit;

use std::time::Duration;

use bento::client::Client;
use bento::wire::api::{NewKey, SessionState};
use kit::client::{create, submit, wait_session};
use kit::controller::{Controller, Setup};
use kit::requests::{answer, http, Answer};
use kit::{cli_output, expect_code, out};
use reqwest::Method;
use serde_json::json;

const OPERATOR: &str = "operator-key-0123456789abcdef";
/// Waits for input, silently: nothing is left to read once it is killed.
const IDLE: &str = "def main():\n    recv()\n";
/// 6 MiB of output, then waits: more than the memory window, so spooled.
const FLOOD: &str =
    "def main():\n    for _ in range(6):\n        send(b'x' * (1 << 20))\n    recv()\n";

struct Q {
    ctl: Controller,
    keys: std::collections::HashMap<String, NewKey>,
}

async fn controller(quotas: &str, tenants: &[&str]) -> Q {
    kit::docker::ensure_image().await;
    let setup = Setup {
        extra: format!("heartbeat_interval: 1s\napi_key: {OPERATOR}\nmax_sessions: 200\n{quotas}"),
        ..Setup::default()
    };
    let mut ctl = Controller::in_temp_dir("quotas", setup).unwrap_or_else(|e| panic!("{e}"));
    ctl.thorough_cleanup = true;
    let data = ctl.dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let d = data.display().to_string();
    let mut keys = std::collections::HashMap::new();
    for t in tenants {
        let o = cli_output(
            "http://127.0.0.1:9",
            &["tenants", "add", t, "--data-dir", &d],
        )
        .await;
        expect_code(&o, 0, "tenants add");
        let o = cli_output(
            "http://127.0.0.1:9",
            &["keys", "create", "--tenant", t, "--json", "--data-dir", &d],
        )
        .await;
        expect_code(&o, 0, "keys create");
        let k: NewKey = serde_json::from_str(&out(&o)).unwrap_or_else(|e| panic!("{e}"));
        keys.insert(t.to_string(), k);
    }
    ctl.start().await;
    Q { ctl, keys }
}

impl Q {
    fn client(&self, t: &str) -> Client {
        Client::new(&self.ctl.url(), Some(self.key(t))).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(&self, t: &str) -> String {
        self.keys.get(t).map(|k| k.key.clone()).unwrap_or_default()
    }

    async fn post(&self, t: &str, path: &str, body: serde_json::Value) -> Answer {
        let req = http()
            .request(Method::POST, format!("{}{path}", self.ctl.url()))
            .bearer_auth(self.key(t))
            .json(&body);
        answer(req).await
    }

    /// Starts a session with raw headers kept, for the 429s.
    async fn start(
        &self,
        t: &str,
        body: serde_json::Value,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let resp = http()
            .post(format!("{}/v1/sessions", self.ctl.url()))
            .bearer_auth(self.key(t))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (status, text, headers)
    }
}

/// A 429 that names `quota`, with the rate-limit headers.
fn refused(
    what: &str,
    quota: &str,
    (status, body, headers): &(u16, String, reqwest::header::HeaderMap),
) {
    assert_eq!(*status, 429, "{what}: {body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["quota"], quota, "{what}: {body}");
    assert_eq!(v["code"], "too_many_requests", "{body}");
    assert!(v["error"].as_str().unwrap_or("").contains(quota), "{body}");
    for h in [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ] {
        let value = headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(
            value.parse::<u64>().is_ok(),
            "{what}: header {h} is {value:?}"
        );
    }
}

fn created(what: &str, (status, body, _): &(u16, String, reqwest::header::HeaderMap)) -> String {
    assert_eq!(*status, 201, "{what}: {body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
    v["token"].as_str().unwrap_or_default().to_string()
}

/// Kills a session, waits for its end, and removes it, container and all.
async fn kill_and_remove(c: &Client, token: &str) {
    c.kill_session(token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    wait_session(c, token, "its end", Duration::from_secs(60), |i| {
        i.state == SessionState::Ended
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    c.remove_session(token)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_quota_is_refused_with_429_and_headers_and_the_other_tenant_goes_on() {
    let quotas = "tenants:\n\
      \x20 q:\n    quotas: {sessions: 2, starts_per_minute: 4, functions: 2, function_bytes: 1m}\n\
      \x20 m:\n    quotas: {memory: 600m}\n\
      \x20 c:\n    quotas: {cpus: 1.5}\n\
      \x20 s:\n    quotas: {spool_bytes: 1m}\n";
    let q = controller(quotas, &["q", "m", "c", "s", "free"]).await;
    let (qc, free) = (q.client("q"), q.client("free"));

    // Functions: two, then the third is refused; size too.
    let f = submit(&qc, IDLE).await;
    let big = "#".repeat(1 << 20);
    let too_big = q.post("q", "/v1/functions", json!({"code": big})).await;
    assert_eq!(too_big.status, 429, "{}", too_big.body);
    assert!(too_big.body.contains("function_bytes"), "{}", too_big.body);
    submit(&qc, IDLE).await;
    let third = q.post("q", "/v1/functions", json!({"code": IDLE})).await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert!(
        third.body.contains("\"quota\":\"functions\""),
        "{}",
        third.body
    );

    // Concurrent sessions: two, then refused, while "free" starts at will.
    let s1 = created("q 1", &q.start("q", json!({"function": f})).await);
    let s2 = created("q 2", &q.start("q", json!({"function": f})).await);
    refused(
        "q 3",
        "sessions",
        &q.start("q", json!({"function": f})).await,
    );
    let ff = submit(&free, IDLE).await;
    let mut free_tokens = Vec::new();
    for _ in 0..3 {
        free_tokens.push(create(&free, &ff, &[]).await);
    }
    // Ending one makes room; starts per minute then run out (4 in 60 s).
    kill_and_remove(&qc, &s1).await;
    let s3 = created(
        "q after a kill",
        &q.start("q", json!({"function": f})).await,
    );
    kill_and_remove(&qc, &s3).await;
    let s4 = created("q 4th start", &q.start("q", json!({"function": f})).await);
    kill_and_remove(&qc, &s4).await;
    let fifth = q.start("q", json!({"function": f})).await;
    refused("q 5th start in a minute", "starts_per_minute", &fifth);
    let wait: u64 = fifth
        .2
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=61).contains(&wait), "retry after {wait} s");
    created(
        "free, meanwhile",
        &q.start("free", json!({"function": ff})).await,
    );

    // Memory: 256 MiB by default; 400 MiB more is over 600 MiB, 300 is not.
    let mc = q.client("m");
    let mf = submit(&mc, IDLE).await;
    created("m 1", &q.start("m", json!({"function": mf})).await);
    refused(
        "m 400m",
        "memory",
        &q.start(
            "m",
            json!({"function": mf, "limits": {"memory": 400u64 << 20}}),
        )
        .await,
    );
    created(
        "m 300m",
        &q.start(
            "m",
            json!({"function": mf, "limits": {"memory": 300u64 << 20}}),
        )
        .await,
    );

    // CPUs: 1 by default; another 1 is over 1.5, 0.5 is not.
    let cc = q.client("c");
    let cf = submit(&cc, IDLE).await;
    created("c 1", &q.start("c", json!({"function": cf})).await);
    refused(
        "c 1 more",
        "cpus",
        &q.start("c", json!({"function": cf})).await,
    );
    created(
        "c 0.5",
        &q.start("c", json!({"function": cf, "limits": {"cpus": 0.5}}))
            .await,
    );

    // Spool: a detached flood of 6 MiB goes to disk; no new session until
    // it is read.
    let sc = q.client("s");
    let sf = submit(&sc, FLOOD).await;
    let flood = create(&sc, &sf, &[]).await;
    wait_session(
        &sc,
        &flood,
        "output spooled",
        Duration::from_secs(60),
        |i| i.spooled_bytes >= 1 << 20,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    refused(
        "s with 1 MiB spooled",
        "spool_bytes",
        &q.start("s", json!({"function": sf})).await,
    );

    // The figures, per tenant and quota.
    let metrics = answer(
        http()
            .get(format!("{}/metrics", q.ctl.url()))
            .bearer_auth(OPERATOR),
    )
    .await;
    for line in [
        "bento_tenant_quota_limit{tenant=\"q\",quota=\"sessions\"} 2",
        "bento_tenant_quota_used{tenant=\"q\",quota=\"sessions\"} 1",
        "bento_tenant_quota_used{tenant=\"q\",quota=\"functions\"} 2",
        "bento_tenant_quota_refused_total{tenant=\"q\",quota=\"sessions\"} 1",
        "bento_tenant_quota_refused_total{tenant=\"q\",quota=\"starts_per_minute\"} 1",
        "bento_tenant_quota_refused_total{tenant=\"s\",quota=\"spool_bytes\"} 1",
        "bento_tenant_quota_used{tenant=\"free\",quota=\"sessions\"} 4",
    ] {
        assert!(
            metrics.body.contains(line),
            "{line} missing from:\n{}",
            metrics.body
        );
    }
    // A tenant's key cannot read every tenant's figures.
    let theirs = answer(
        http()
            .get(format!("{}/metrics", q.ctl.url()))
            .bearer_auth(q.key("q")),
    )
    .await;
    assert_eq!(theirs.status, 403);
    let audit = std::fs::read_to_string(q.ctl.dir.join("data/audit.log")).unwrap_or_default();
    let refusals = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"quota_refused\""))
        .count();
    assert_eq!(refusals, 7, "one per refusal above: {audit}");
    for t in free_tokens.iter().chain([&s2]) {
        assert!(!audit.contains(t.as_str()), "the audit log holds a token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_starts_from_two_tenants_gets_sessions_or_clear_429s() {
    let quotas = "tenants:\n  burst:\n    quotas: {sessions: 60}\n";
    let q = controller(quotas, &["burst", "calm"]).await;
    let fb = submit(&q.client("burst"), IDLE).await;
    let fc = submit(&q.client("calm"), IDLE).await;
    let q = std::sync::Arc::new(q);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (q, t, f) = if i % 10 < 7 {
            (q.clone(), "burst", fb.clone())
        } else {
            (q.clone(), "calm", fc.clone())
        };
        tasks.push(tokio::spawn(async move {
            let r =
                tokio::time::timeout(Duration::from_secs(300), q.start(t, json!({"function": f})))
                    .await;
            (t, r)
        }));
    }
    let mut by_tenant: std::collections::HashMap<(&str, u16), usize> = Default::default();
    let mut tokens: Vec<(&str, String)> = Vec::new();
    for task in tasks {
        let (t, r) = task.await.unwrap_or_else(|e| panic!("{e}"));
        let answer = r.unwrap_or_else(|_| panic!("a start of {t} hung for 5 minutes"));
        match answer.0 {
            201 => tokens.push((t, created(t, &answer))),
            429 => refused(t, "sessions", &answer),
            other => panic!("{t}: {other} {}", answer.1),
        }
        *by_tenant.entry((t, answer.0)).or_default() += 1;
    }
    println!("burst: {by_tenant:?}");
    assert_eq!(by_tenant.get(&("burst", 201)), Some(&60));
    assert_eq!(by_tenant.get(&("burst", 429)), Some(&10));
    assert_eq!(by_tenant.get(&("calm", 201)), Some(&30));
    assert_eq!(by_tenant.get(&("calm", 429)), None);
    for (t, token) in &tokens {
        kill_and_remove(&q.client(t), token).await;
    }
    // Each removal reaps its session; the container goes with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut left = q.ctl.containers().await;
    while left > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = q.ctl.containers().await;
    }
    assert_eq!(left, 0, "containers left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_cannot_pass_the_functions_quota() {
    let quotas = "tenants:\n  f:\n    quotas: {functions: 3}\n";
    let q = std::sync::Arc::new(controller(quotas, &["f"]).await);
    // Each submit runs a syntax check in a container: all ten are between
    // the quota check and the store at once.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let code = format!("def main():\n    send({i})\n");
            q.post("f", "/v1/functions", json!({ "code": code })).await
        }));
    }
    let (mut stored, mut refused) = (0, 0);
    for task in tasks {
        let a = task.await.unwrap_or_else(|e| panic!("{e}"));
        match a.status {
            201 => stored += 1,
            429 if a.body.contains("\"quota\":\"functions\"") => refused += 1,
            other => panic!("a submit got {other}: {}", a.body),
        }
    }
    assert_eq!((stored, refused), (3, 7));
    let listed = q
        .client("f")
        .list_functions()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 3, "{listed:?}");
    // A refused submit gives its place back: one deleted, one stored.
    q.client("f")
        .delete_function(&listed[0].id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = q.post("f", "/v1/functions", json!({"code": IDLE})).await;
    assert_eq!(again.status, 201, "{}", again.body);
}
