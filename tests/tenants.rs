//! Tenants against the real Docker engine, through a real `bento serve`:
//! keys made offline with the CLI, every route of `api::ROUTES` tried with
//! another tenant's keys, viewers, revocation closing an open attach, the
//! token as a capability and the per-tenant setting that asks for a key,
//! and that keys and tokens appear in no log, audit record, metric or
//! `ls`/`inspect` output. Quotas are in `tests/tenant_quotas.rs`.

mod kit;

use std::path::Path;
use std::time::{Duration, Instant};

use bento::client::Client;
use bento::wire::api::{CloseReason, NewKey, ServerMsg};
use futures_util::StreamExt;
use kit::client::{create, receive, submit, try_attach, wait_reaped, wait_session};
use kit::controller::{Controller, Setup};
use kit::requests::{answer, http, read_hello, ws_connect, ws_refused, Answer};
use kit::{cli_output, err, expect_code, out};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

/// The operator's key: the legacy `api_key`, an admin of the default tenant.
const OPERATOR: &str = "operator-key-0123456789abcdef";
/// Waits for input forever, saying so first.
const WAITER: &str = "def main():\n    send('ready')\n    while True:\n        send(recv())\n";
const ONCE: &str = "def main():\n    send('done')\n";
const SECRET_VALUE: &str = "tenant-a-secret-value-7f3e";

/// Runs `bento ARGS` offline against a data dir, with no controller.
async fn offline(args: &[&str], data: &Path) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    let d = data.display().to_string();
    all.extend(["--data-dir", &d]);
    cli_output("http://127.0.0.1:9", &all).await
}

async fn make_key(data: &Path, tenant: &str, role: &str) -> NewKey {
    let o = offline(
        &[
            "keys", "create", "--tenant", tenant, "--role", role, "--json",
        ],
        data,
    )
    .await;
    expect_code(&o, 0, "keys create");
    serde_json::from_str(&out(&o)).unwrap_or_else(|e| panic!("key JSON: {e}: {}", out(&o)))
}

struct World {
    ctl: Controller,
    a_user: NewKey,
    a_viewer: NewKey,
    a_other: NewKey,
    b_user: NewKey,
    b_admin: NewKey,
    c_user: NewKey,
}

/// A controller with tenants a, b and c (c asks for a key to attach), and
/// keys made offline before it starts.
async fn world() -> World {
    kit::docker::ensure_image().await;
    let setup = Setup {
        extra: format!(
            "heartbeat_interval: 1s\napi_key: {OPERATOR}\ntenants:\n  c:\n    attach_requires_key: true\n"
        ),
        env: vec![("RUST_LOG".into(), "debug".into())],
        ..Setup::default()
    };
    let ctl = Controller::in_temp_dir("tenants", setup).unwrap_or_else(|e| panic!("{e}"));
    let data = ctl.dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    for t in ["a", "b", "c"] {
        let o = offline(&["tenants", "add", t], &data).await;
        expect_code(&o, 0, "tenants add");
    }
    let again = offline(&["tenants", "add", "a"], &data).await;
    assert_ne!(again.status.code(), Some(0), "a tenant is added once");
    assert!(err(&again).contains("exists already"), "{}", err(&again));
    let w = World {
        a_user: make_key(&data, "a", "user").await,
        a_viewer: make_key(&data, "a", "viewer").await,
        a_other: make_key(&data, "a", "user").await,
        b_user: make_key(&data, "b", "user").await,
        b_admin: make_key(&data, "b", "admin").await,
        c_user: make_key(&data, "c", "user").await,
        ctl,
    };
    let mut w = w;
    w.ctl.start().await;
    // While it runs, offline changes are refused and say why.
    let o = offline(&["keys", "ls"], &data).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("use the API"), "{}", err(&o));
    w
}

fn keyed(url: &str, key: &NewKey) -> Client {
    Client::new(url, Some(key.key.clone())).unwrap_or_else(|e| panic!("client: {e}"))
}

async fn call(method: Method, url: &str, key: &str, body: Option<serde_json::Value>) -> Answer {
    let mut req = http().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req).await
}

/// Tenant a's objects, as the other tenant would try to reach them.
struct Objects {
    token: String,
    id: String,
    function: String,
    reaped_id: String,
    secret: String,
    key_id: String,
}

async fn a_objects(w: &World) -> Objects {
    let url = w.ctl.url();
    let a = keyed(&url, &w.a_user);
    let f_once = submit(&a, ONCE).await;
    let reaped = create(&a, &f_once, &[]).await;
    let reaped_id = a
        .session(&reaped)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let mut att = try_attach(&a, &reaped, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    receive(&mut att, |_| false).await;
    drop(att);
    wait_reaped(&a, &reaped, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let function = submit(&a, WAITER).await;
    let token = create(&a, &function, &[]).await;
    // Its "ready" is out before anyone reads it.
    wait_session(&a, &token, "its ready", Duration::from_secs(60), |i| {
        i.last_seq >= 1
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let id = a.session(&token).await.unwrap_or_else(|e| panic!("{e}")).id;
    a.set_secret("a_secret", SECRET_VALUE.into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Objects {
        token,
        id,
        function,
        reaped_id,
        secret: "a_secret".into(),
        key_id: w.a_user.info.id.clone(),
    }
}

/// A body of the right shape for an operation, aimed at a's objects.
fn body_for(method: &str, path: &str, o: &Objects) -> Option<serde_json::Value> {
    use serde_json::json;
    match (method, path) {
        ("post", "/v1/functions") => Some(json!({"code": ONCE, "name": "mine"})),
        ("post", "/v1/sessions") => Some(json!({"function": o.function})),
        ("post", "/v1/sessions/{token}/fork") => Some(json!({})),
        ("put", "/v1/secrets/{name}") => Some(json!({"value": "b's own"})),
        ("post", "/v1/tenants") => Some(json!({"name": "from-b"})),
        ("post", "/v1/keys") => Some(json!({"tenant": "a", "role": "admin"})),
        ("post", p) if p.ends_with("/extend") => Some(json!({"by": "1m"})),
        ("post", _) => Some(json!({})),
        _ => None,
    }
}

fn fill(path: &str, o: &Objects) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let v = match seg {
            "{token}" => o.token.clone(),
            "{id}" => o.function.clone(),
            "{ref}" => o.reaped_id.clone(),
            "{name}" => o.secret.clone(),
            "{key}" => o.key_id.clone(),
            s if s.starts_with('{') => {
                panic!("{path}: a new path parameter {s}; teach tests/tenants.rs what of tenant a's it names")
            }
            s => s.to_string(),
        };
        out.push('/');
        out.push_str(&v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_keys_get_404_or_403_on_every_route_never_data() {
    let w = world().await;
    let url = w.ctl.url();
    let o = a_objects(&w).await;
    let identifying = [
        o.token.as_str(),
        o.id.as_str(),
        o.function.as_str(),
        o.reaped_id.as_str(),
        o.key_id.as_str(),
        SECRET_VALUE,
    ];
    let mut tried = 0;
    let mut failures = Vec::new();
    for key in [&w.b_user, &w.b_admin] {
        let role = key.info.role;
        for route in bento::controller::api::ROUTES {
            let path = fill(route.path, &o);
            for op in route.ops {
                tried += 1;
                let what = format!("{} {} with b's {role:?} key", op.method, route.path);
                let a = if route.path.ends_with("/attach") {
                    let ws = format!("{}{path}", url.replacen("http://", "ws://", 1));
                    ws_refused(&ws, Some(&key.key)).await
                } else {
                    let m = Method::from_bytes(op.method.to_uppercase().as_bytes())
                        .unwrap_or_else(|e| panic!("{e}"));
                    call(
                        m,
                        &format!("{url}{path}"),
                        &key.key,
                        body_for(op.method, route.path, &o),
                    )
                    .await
                };
                let leaked: Vec<&&str> = identifying
                    .iter()
                    .filter(|i| a.body.contains(**i))
                    .collect();
                // Aimed at one of a's objects (a secret's name is only a
                // name: b has its own namespace), or making a key of a's.
                let at_a = ["{token}", "{id}", "{ref}", "{key}"]
                    .iter()
                    .any(|p| route.path.contains(p))
                    || (op.method == "post" && route.path == "/v1/keys");
                if a.status >= 500 {
                    failures.push(format!("{what}: {} {}", a.status, a.body));
                } else if ![403, 404].contains(&a.status) && !leaked.is_empty() {
                    failures.push(format!(
                        "{what}: {} shows a's {leaked:?}: {}",
                        a.status, a.body
                    ));
                } else if a.status == 101 {
                    failures.push(format!("{what}: attached to a's session"));
                } else if at_a && ![403, 404].contains(&a.status) {
                    failures.push(format!("{what}: {} on a's object: {}", a.status, a.body));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let ops: usize = bento::controller::api::ROUTES
        .iter()
        .map(|r| r.ops.len())
        .sum();
    assert_eq!(tried, 2 * ops, "every operation, with each of b's keys");
    println!("{tried} operations tried with tenant b's user and admin keys");
    // Nothing of a's was touched: its session runs, its key, function and
    // secret are there.
    let a = keyed(&url, &w.a_user);
    let info = a.session(&o.token).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{:?}", info.state), "Running");
    assert!(a
        .list_functions()
        .await
        .unwrap_or_default()
        .iter()
        .any(|f| f.id == o.function));
    let names: Vec<String> = a
        .list_secrets()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&o.secret), "{names:?}");
    let keys = keyed(&url, &w.a_user).tenants().await;
    assert!(keys.is_err(), "a user key cannot list tenants");
    // b's admin manages b's keys only, and cannot add tenants.
    let b_admin = keyed(&url, &w.b_admin);
    let listed = b_admin.keys(None).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(listed.iter().all(|k| k.tenant == "b"), "{listed:?}");
    assert_eq!(
        b_admin
            .revoke_key(&w.a_user.info.id)
            .await
            .err()
            .and_then(|e| e.status()),
        Some(404)
    );
    // The operator sees every tenant.
    let op = Client::new(&url, Some(OPERATOR.into())).unwrap_or_else(|e| panic!("{e}"));
    let tenants: Vec<String> = op
        .tenants()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|t| t.name)
        .collect();
    for t in ["default", "a", "b", "c"] {
        assert!(tenants.iter().any(|n| n == t), "{tenants:?}");
    }
    grep_for_secrets(&w, &o, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_lists_and_watches_but_cannot_attach_send_close_or_kill() {
    let w = world().await;
    let url = w.ctl.url();
    let o = a_objects(&w).await;
    let v = &w.a_viewer.key;
    let list = call(Method::GET, &format!("{url}/v1/sessions"), v, None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&o.id), "{}", list.body);
    assert!(
        !list.body.contains(&o.token),
        "a viewer is not given tokens: {}",
        list.body
    );
    // Watching goes by the id the listing gave.
    let page = call(
        Method::GET,
        &format!("{url}/v1/sessions/{}/output", o.id),
        v,
        None,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("ready"), "{}", page.body);
    let ws = format!(
        "{}/v1/sessions/{}/attach",
        url.replacen("http://", "ws://", 1),
        o.token
    );
    assert_eq!(ws_refused(&ws, Some(v)).await.status, 403);
    for action in ["close", "kill"] {
        let a = call(
            Method::POST,
            &format!("{url}/v1/sessions/{}/{action}", o.token),
            v,
            None,
        )
        .await;
        assert_eq!(a.status, 403, "{action}: {}", a.body);
        assert!(a.body.contains("viewer"), "{}", a.body);
    }
    let run = call(
        Method::POST,
        &format!("{url}/v1/sessions"),
        v,
        Some(serde_json::json!({"function": o.function})),
    )
    .await;
    assert_eq!(run.status, 403);
    // The id does not stand in for the token as a capability.
    let by_id = format!(
        "{}/v1/sessions/{}/attach",
        url.replacen("http://", "ws://", 1),
        o.id
    );
    assert_eq!(ws_refused(&by_id, None).await.status, 401);
    let a = keyed(&url, &w.a_user);
    let info = a.session(&o.token).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{:?}", info.state), "Running");
    assert!(!info.attached);
}

/// Reads until a `closed` message, and returns its reason.
async fn closed_reason(ws: &mut kit::requests::Ws, within: Duration) -> Option<CloseReason> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        if let Ok(Message::Text(t)) = m {
            if let Ok(ServerMsg::Closed { reason }) = serde_json::from_str(t.as_str()) {
                return Some(reason);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_closes_its_attach_and_refuses_its_next_request() {
    let w = world().await;
    let url = w.ctl.url();
    let o = a_objects(&w).await;
    let ws_url = format!(
        "{}/v1/sessions/{}/attach",
        url.replacen("http://", "ws://", 1),
        o.token
    );
    let mut ws = ws_connect(&ws_url, Some(&w.a_other.key))
        .await
        .unwrap_or_else(|e| panic!("attach: {e}"));
    read_hello(&mut ws).await;
    let revoke = cli_output(
        &url,
        &["keys", "revoke", &w.a_other.info.id, "--api-key", OPERATOR],
    )
    .await;
    expect_code(&revoke, 0, "keys revoke");
    let revoked_at = Instant::now();
    let reason = closed_reason(&mut ws, Duration::from_secs(10)).await;
    println!(
        "the open attach closed {:?} after the revocation",
        revoked_at.elapsed()
    );
    assert_eq!(reason, Some(CloseReason::KeyRevoked));
    let next = call(
        Method::GET,
        &format!("{url}/v1/sessions"),
        &w.a_other.key,
        None,
    )
    .await;
    assert_eq!(next.status, 401);
    assert!(next.body.contains("revoked"), "{}", next.body);
    // The session itself is untouched, and the tenant's other key works.
    let info = keyed(&url, &w.a_user)
        .session(&o.token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{:?}", info.state), "Running");
    let ls = cli_output(&url, &["keys", "ls", "--api-key", OPERATOR]).await;
    expect_code(&ls, 0, "keys ls");
    let line = out(&ls)
        .lines()
        .find(|l| l.starts_with(&w.a_other.info.id))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.ends_with(" ago"),
        "the revoked key shows when: {line:?}"
    );
    let audit = std::fs::read_to_string(w.ctl.dir.join("data/audit.log")).unwrap_or_default();
    assert!(audit.contains("\"event\":\"key_revoked\""), "{audit}");
    grep_for_secrets(&w, &o, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_alone_attaches_unless_its_tenant_asks_for_a_key() {
    let w = world().await;
    let url = w.ctl.url();
    let o = a_objects(&w).await;
    let ws_base = url.replacen("http://", "ws://", 1);
    let mut ws = ws_connect(&format!("{ws_base}/v1/sessions/{}/attach", o.token), None)
        .await
        .unwrap_or_else(|e| panic!("a token alone attaches in tenant a: {e}"));
    read_hello(&mut ws).await;
    drop(ws);
    // No other route takes a token alone.
    let bare = answer(http().get(format!("{url}/v1/sessions/{}", o.token))).await;
    assert_eq!(bare.status, 401);
    let c = keyed(&url, &w.c_user);
    let f = submit(&c, WAITER).await;
    let token = create(&c, &f, &[]).await;
    let attach = format!("{ws_base}/v1/sessions/{token}/attach");
    let alone = ws_refused(&attach, None).await;
    assert_eq!(alone.status, 401, "{}", alone.body);
    assert!(alone.body.contains("requires a key"), "{}", alone.body);
    let mut ws = ws_connect(&attach, Some(&w.c_user.key))
        .await
        .unwrap_or_else(|e| panic!("c's own key attaches: {e}"));
    read_hello(&mut ws).await;
    // a's key finds nothing of c's.
    assert_eq!(ws_refused(&attach, Some(&w.a_user.key)).await.status, 404);
}

/// Every key and token of the world, and the secret's value, appear in
/// no log, audit record, metric or `ls`/`inspect` output.
async fn grep_for_secrets(w: &World, o: &Objects, extra: &[&str]) {
    let url = w.ctl.url();
    let mut needles: Vec<String> = [
        &w.a_user,
        &w.a_viewer,
        &w.a_other,
        &w.b_user,
        &w.b_admin,
        &w.c_user,
    ]
    .iter()
    .map(|k| k.key.clone())
    .collect();
    needles.push(o.token.clone());
    needles.push(SECRET_VALUE.into());
    needles.push(OPERATOR.into());
    needles.extend(extra.iter().map(|s| s.to_string()));
    let mut haystacks: Vec<(String, String)> = vec![
        (
            "controller log".into(),
            std::fs::read_to_string(w.ctl.log_path()).unwrap_or_default(),
        ),
        (
            "audit log".into(),
            std::fs::read_to_string(w.ctl.dir.join("data/audit.log")).unwrap_or_default(),
        ),
    ];
    let metrics = call(Method::GET, &format!("{url}/metrics"), OPERATOR, None).await;
    assert_eq!(metrics.status, 200);
    haystacks.push(("metrics".into(), metrics.body));
    let key = w.a_user.key.as_str();
    // ls and inspect show the token shortened to this.
    let shown = o.token[..12].to_string();
    for args in [
        vec!["ls"],
        vec!["ls", "-a"],
        vec!["inspect", o.token.as_str()],
    ] {
        let mut all = args.clone();
        all.extend(["--api-key", key]);
        let o = cli_output(&url, &all).await;
        // It worked and showed the session: an error would hold nothing.
        expect_code(&o, 0, &args.join(" "));
        assert!(out(&o).contains(&shown), "{}", out(&o));
        haystacks.push((
            format!("bento {}", args.join(" ")),
            format!("{}{}", out(&o), err(&o)),
        ));
    }
    assert!(
        haystacks[1].1.contains("session_created"),
        "the audit log has records: {}",
        haystacks[1].1
    );
    assert!(
        haystacks[0].1.contains("DEBUG"),
        "the controller's log was read"
    );
    for (name, text) in &haystacks {
        for n in &needles {
            assert!(
                !text.contains(n.as_str()),
                "{name} holds a key, token or secret"
            );
        }
    }
    let tenants_db = std::fs::read(w.ctl.dir.join("data/tenants.db")).unwrap_or_default();
    assert!(!tenants_db.is_empty(), "tenants.db was read");
    for k in [&w.a_user, &w.b_admin] {
        let secret = k.key.rsplit('_').next().unwrap_or_default();
        assert!(
            !tenants_db
                .windows(secret.len())
                .any(|x| x == secret.as_bytes()),
            "tenants.db holds a key"
        );
    }
}

/// Rewrites the controller's `bento.yaml`, replacing `from` by `to`.
fn reconfigure(ctl: &Controller, from: &str, to: &str) {
    let path = ctl.dir.join("config/bento.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains(from), "{from:?} is not in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap_or_else(|e| panic!("{e}"));
}

/// The names `GET /v1/images` lists for `key`.
async fn image_names(url: &str, key: &NewKey) -> Vec<String> {
    let a = call(Method::GET, &format!("{url}/v1/images"), &key.key, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Vec<serde_json::Value> = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}"));
    v.iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Submits [`ONCE`] with `key`, in `image` (or the default one).
async fn submit_in(url: &str, key: &NewKey, image: Option<&str>) -> Answer {
    let mut body = serde_json::json!({ "code": ONCE });
    if let Some(i) = image {
        body["image"] = i.into();
    }
    call(
        Method::POST,
        &format!("{url}/v1/functions"),
        &key.key,
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_and_runs_only_the_images_it_is_given() {
    kit::docker::ensure_image().await;
    let setup = Setup {
        extra: format!("api_key: {OPERATOR}\ntenants:\n  kept:\n    images: [python]\n"),
        ..Setup::default()
    };
    let mut ctl = Controller::in_temp_dir("images", setup).unwrap_or_else(|e| panic!("{e}"));
    // Two images: python, and "other" (say, one with the network on).
    let images = ctl.dir.join("images");
    std::fs::create_dir_all(&images).unwrap_or_else(|e| panic!("{e}"));
    let python = std::fs::read_to_string(kit::repo().join("config/images/python.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let other = python.replacen("\nname: python\n", "\nname: other\n", 1);
    assert_ne!(other, python, "python.yaml has no name line");
    std::fs::write(images.join("python.yaml"), &python).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(images.join("other.yaml"), &other).unwrap_or_else(|e| panic!("{e}"));
    let shipped = format!(
        "images_dir: {}\n",
        kit::repo().join("config/images").display()
    );
    reconfigure(
        &ctl,
        &shipped,
        &format!("images_dir: {}\n", images.display()),
    );
    let data = ctl.dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    for t in ["kept", "free"] {
        expect_code(&offline(&["tenants", "add", t], &data).await, 0, "add");
    }
    let (kept, free) = (
        make_key(&data, "kept", "user").await,
        make_key(&data, "free", "user").await,
    );
    ctl.start().await;
    let url = ctl.url();
    assert_eq!(image_names(&url, &kept).await, ["python"]);
    assert_eq!(image_names(&url, &free).await, ["other", "python"]);
    let f = submit(&keyed(&url, &kept), ONCE).await;
    let refused = submit_in(&url, &kept, Some("other")).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("unknown image \\\"other\\\"; known images: python"),
        "{}",
        refused.body
    );

    // The operator gives it "other" only: its python function stays, and
    // may no longer start.
    ctl.kill();
    reconfigure(&ctl, "images: [python]", "images: [other]");
    ctl.start().await;
    assert_eq!(image_names(&url, &kept).await, ["other"]);
    let run = call(
        Method::POST,
        &format!("{url}/v1/sessions"),
        &kept.key,
        Some(serde_json::json!({ "function": f })),
    )
    .await;
    assert_eq!(run.status, 403, "{}", run.body);
    assert!(
        run.body
            .contains("runs in image \\\"python\\\", which tenant kept may not use"),
        "{}",
        run.body
    );
    let default = submit_in(&url, &kept, None).await;
    assert_eq!(default.status, 400, "{}", default.body);
    assert!(
        default.body.contains("choose one of: other"),
        "{}",
        default.body
    );
    // The other tenant runs python as before.
    let free_client = keyed(&url, &free);
    let g = submit(&free_client, ONCE).await;
    let token = create(&free_client, &g, &[]).await;
    let got = receive(
        &mut try_attach(&free_client, &token, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        |_| false,
    )
    .await;
    assert_eq!(got.data_strings(), ["done"]);

    // An image the config does not have is refused at start, by name.
    ctl.kill();
    reconfigure(&ctl, "images: [other]", "images: [nope]");
    let e = ctl.try_start().await.err().unwrap_or_default();
    assert!(
        e.contains("tenants.kept.images: unknown image \"nope\""),
        "{e}"
    );
}
