//! `bento images build` with `engine: swarm`: without a registry the image
//! is built on the host's engine and loaded on every node that lacks it;
//! with one (Debian's `docker-registry`, run by the test on the host side)
//! it is pushed, and nodes pull it.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::kit::receive;
use crate::swarm_kit::cluster::NODES;
use crate::swarm_kit::{say, Cluster, Ctl};

/// The image the test builds; on no node before it.
const TAG: &str = "bento/copied:latest";

/// `bento images build copied` with a config of `engine: swarm` whose
/// image `copied` is python's under another name.
fn build(cluster: &Cluster, dir: &std::path::Path) -> Output {
    build_as(cluster, dir, "copied", "")
        .output()
        .unwrap_or_else(|e| panic!("bento images build: {e}"))
}

/// `bento images build NAME` (python's image under another name), with
/// `extra` in the config's `swarm:` section.
fn build_as(cluster: &Cluster, dir: &std::path::Path, name: &str, extra: &str) -> Command {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(repo.join("config/images/python.yaml"))
        .unwrap_or_else(|e| panic!("python.yaml: {e}"));
    let context = repo.join("images/python");
    let yaml = yaml
        .replace("\nname: python\n", &format!("\nname: {name}\n"))
        .replace(
            "\ncontext: images/python\n",
            &format!("\ncontext: {}\n", context.display()),
        );
    assert!(
        yaml.contains(&format!("name: {name}")) && yaml.contains(&context.display().to_string()),
        "python.yaml changed its layout"
    );
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(images.join(format!("{name}.yaml")), yaml)
        .unwrap_or_else(|e| panic!("write: {e}"));
    let config = format!(
        "images_dir: {}\ndriver_dir: {}\nengine: swarm\nswarm:\n  manager: {}\n  \
         node_port: 2375\n  allow_plain_tcp: true\n{extra}",
        images.display(),
        repo.join("driver").display(),
        cluster.manager(),
    );
    let path = dir.join("bento.yaml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("write: {e}"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_bento"));
    c.args(["images", "build", name, "--config"]).arg(&path);
    c
}

/// The lines of `out` naming node `i`.
fn node_line(cluster: &Cluster, out: &str, i: usize) -> String {
    let name = format!("{}:", cluster.hostname(i));
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&name)).collect();
    assert_eq!(lines.len(), 1, "node {i} in:\n{out}");
    lines[0].to_string()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn remove_everywhere(cluster: &Cluster) {
    for i in 1..=NODES {
        let _ = cluster.docker(i, &["rmi", TAG]);
    }
    let _ = Command::new("docker").args(["rmi", TAG]).output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_build_loads_the_image_on_every_node_that_lacks_it() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    remove_everywhere(cluster);
    for i in 1..=NODES {
        let o = cluster.docker(i, &["image", "inspect", TAG]);
        assert!(!o.status.success(), "node {i} has {TAG} before the build");
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));

    let first = build(cluster, dir.path());
    let out = text(&first);
    say(&format!("first build:\n{out}"));
    assert!(first.status.success(), "{out}");
    for i in 1..=NODES {
        let line = node_line(cluster, &out, i);
        assert!(line.contains("loaded ("), "{line}");
        let o = cluster.docker(i, &["image", "inspect", "--format", "{{.Id}}", TAG]);
        assert!(o.status.success(), "node {i} lacks {TAG} after the build");
    }
    let host = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", TAG])
        .output()
        .unwrap_or_else(|e| panic!("docker: {e}"));
    let host_id = String::from_utf8_lossy(&host.stdout).trim().to_string();
    for i in 1..=NODES {
        let o = cluster.docker(i, &["image", "inspect", "--format", "{{.Id}}", TAG]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            host_id,
            "node {i}"
        );
    }

    // Again, with node 3 having lost it: only node 3 gets it.
    cluster.docker_ok([3], &["rmi", TAG]);
    let second = build(cluster, dir.path());
    let out = text(&second);
    say(&format!("second build:\n{out}"));
    assert!(second.status.success(), "{out}");
    for i in 1..NODES {
        let line = node_line(cluster, &out, i);
        assert!(line.contains("has it already"), "{line}");
    }
    assert!(node_line(cluster, &out, 3).contains("loaded ("), "{out}");

    // A controller runs sessions of it on any node.
    let ctl = Ctl::start_with(cluster, 0, &[("copied", &[])]).await;
    let body = bento::wire::api::SubmitFunction {
        code: "send('from a copied image')\n".into(),
        name: None,
        image: Some("copied".into()),
        filename: None,
    };
    let f = match ctl.client.submit_function(&body).await {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}\n{}", ctl.log_tail()),
    };
    for _ in 0..3 {
        let (token, _) = ctl.session(&f, &[]).await;
        let mut att = ctl.attach(&token, 0).await;
        let r = receive(&mut att, |_| false).await;
        assert_eq!(r.data_strings(), vec!["from a copied image"]);
    }
    drop(ctl);
    remove_everywhere(cluster);
}

/// Debian's `docker-registry`, serving plain HTTP at `addr` from a
/// directory of its own until dropped.
struct Registry {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `None` (after saying why) where `docker-registry` is not installed;
    /// under `BENTO_SWARM_TESTS=require` that fails instead.
    async fn start(addr: &str) -> Option<Registry> {
        let Some(bin) = ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            let why = "docker-registry is not installed (apt-get install docker-registry)";
            if std::env::var("BENTO_SWARM_TESTS").as_deref() == Ok("require") {
                panic!("{why}");
            }
            say(&format!("SKIPPED: {why}"));
            return None;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write: {e}"));
        let child = Command::new(bin)
            .arg("serve")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry: {e}"));
        let registry = Registry { child, _dir: dir };
        let url = format!("http://{addr}/v2/");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let answer = http
                .get(&url)
                .timeout(std::time::Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Some(registry);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("docker-registry at {addr} did not answer");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_registry_images_build_pushes_and_the_nodes_pull() {
    let Some((cluster, _turn)) = Cluster::get().await else {
        return;
    };
    let addr = cluster.var("CLUSTER_REGISTRY").to_string();
    let Some(_registry) = Registry::start(&addr).await else {
        return;
    };
    let tag = format!("{addr}/bento/pushed:latest");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // Built on node 1 (which trusts the registry; the machine's own engine
    // is not reconfigured), from the image the nodes have.
    let mut build = build_as(
        cluster,
        dir.path(),
        "pushed",
        &format!("  registry: {addr}\n"),
    );
    build
        .env("DOCKER_HOST", cluster.var("NODE1_SOCKET"))
        .env("BENTO_BASE_IMAGE", crate::swarm_kit::IMAGE);
    let built = build
        .output()
        .unwrap_or_else(|e| panic!("bento images build: {e}"));
    let out = text(&built);
    say(&format!("build with a registry:\n{out}"));
    assert!(built.status.success(), "{out}");
    assert!(out.contains(&format!("pushed {tag} in ")), "{out}");
    // Now on no node: the first session's node pulls it.
    cluster.docker_ok([1], &["rmi", &tag]);

    let ctl = Ctl::start_full(
        cluster,
        0,
        &[("pushed", &[])],
        &format!("  registry: {addr}\n"),
    )
    .await;
    let cfg = bento::config::SwarmConfig {
        manager: cluster.manager().to_string(),
        node_port: 2375,
        allow_plain_tcp: true,
        registry: Some(addr.clone()),
        ..Default::default()
    };
    let swarm = bento::runtime::SwarmRuntime::connect(&cfg, "observer.invalid")
        .await
        .unwrap_or_else(|e| panic!("swarm: {e}"));
    use bento::runtime::Runtime;
    assert!(matches!(swarm.image_exists(&tag).await, Ok(true)));
    let absent = format!("{addr}/bento/never-pushed:latest");
    let answer = swarm.image_exists(&absent).await;
    assert!(matches!(answer, Ok(false)), "{answer:?}");

    let body = bento::wire::api::SubmitFunction {
        code: "send('up')\nrecv()\n".into(),
        name: None,
        image: Some("pushed".into()),
        filename: None,
    };
    let f = match ctl.client.submit_function(&body).await {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}\n{}", ctl.log_tail()),
    };
    let mut nodes = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (token, id) = ctl.session(&f, &[]).await;
        let mut att = ctl.attach(&token, 0).await;
        let r = receive(&mut att, |r| !r.data.is_empty()).await;
        assert_eq!(r.data_strings(), vec!["up"]);
        nodes.insert(ctl.node_of(&id).await);
        if let Err(e) = ctl.client.kill_session(&token).await {
            panic!("kill: {e}");
        }
    }
    say(&format!("sessions of a pushed image ran on {nodes:?}"));
    for i in 1..=NODES {
        if nodes.contains(&cluster.hostname(i)) {
            let o = cluster.docker(i, &["image", "inspect", &tag]);
            assert!(o.status.success(), "node {i} ran it but has no {tag}");
        }
    }
    drop(ctl);
    for i in 1..=NODES {
        let _ = cluster.docker(i, &["rmi", &tag]);
    }
}
