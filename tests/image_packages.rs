//! Declared images (`packages:` and `files:` in an image's YAML) against
//! the real engine: `bento images build` makes an image with an apt
//! package, a pip package from PyPI (through this machine's
//! TLS-intercepting proxy, trusted by naming the host's CA bundle in
//! `build.ca_bundle`, which is the point) and a file, and a function in it
//! uses all three. An unchanged declaration is not built again, a changed
//! one is, and a pip package that does not exist fails the build with its
//! name and the build log's last lines.
//!
//! Needs the network for the build (Debian's mirror, PyPI), as any
//! `bento images build` of packages does; the session itself has none.

mod kit;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use bento::config::Config;
use bento::wire::api::SubmitFunction;
use kit::{err, out, receive, TestServer};

/// The host's CA bundle: the proxy's CA is in it.
const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The longest one build may take (apt and PyPI over the network).
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// A scratch repository with one declared image, and the image's cleanup.
struct Scratch {
    dir: tempfile::TempDir,
    name: String,
    /// Image IDs this test made, removed when it ends (a rebuild leaves the
    /// earlier one untagged).
    made: Vec<String>,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let name = format!(
            "pkgtest-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let config = format!(
            "images_dir: config/images\ndriver_dir: {}\nbuild:\n  ca_bundle: {HOST_CA}\n",
            kit::repo().join("driver").display()
        );
        std::fs::create_dir_all(dir.path().join("config/images"))
            .unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::create_dir_all(dir.path().join("data")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::write(dir.path().join("config/bento.yaml"), config)
            .unwrap_or_else(|e| panic!("write: {e}"));
        Scratch {
            dir,
            name,
            made: Vec::new(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/bento.yaml")
    }

    fn tag(&self) -> String {
        format!("bento/{}:latest", self.name)
    }

    /// Writes the image's YAML with these pip requirements, and the words
    /// file it copies.
    fn declare(&self, pip: &[&str], words: &str) {
        let yaml = format!(
            "name: {}\nbase: python:3.12-slim\npackages:\n  apt: [libgomp1]\n  pip: [{}]\n\
             files: {{\"/opt/data/words.txt\": data/words.txt}}\n",
            self.name,
            pip.join(", ")
        );
        let images = self.dir.path().join("config/images");
        std::fs::write(images.join(format!("{}.yaml", self.name)), yaml)
            .unwrap_or_else(|e| panic!("write: {e}"));
        std::fs::write(self.dir.path().join("data/words.txt"), words)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// `bento images build NAME --config ...`, within [`BUILD_LIMIT`].
    async fn build(&self) -> Output {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_bento"));
        c.args(["images", "build", &self.name, "--config"])
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn bento: {e}"));
        match tokio::time::timeout(BUILD_LIMIT, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => panic!("bento images build: {e}"),
            Err(_) => panic!("bento images build took more than {BUILD_LIMIT:?}"),
        }
    }

    /// The image's ID and its build-hash label, remembered for cleanup.
    fn inspect(&mut self) -> (String, String) {
        let o = std::process::Command::new("docker")
            .args(["image", "inspect", "--format"])
            .arg(format!(
                "{{{{.Id}}}} {{{{index .Config.Labels \"{}\"}}}}",
                bento::runtime::images::HASH_LABEL
            ))
            .arg(self.tag())
            .output()
            .unwrap_or_else(|e| panic!("docker: {e}"));
        assert!(o.status.success(), "inspect {}: {}", self.tag(), err(&o));
        let text = out(&o);
        let mut parts = text.split_whitespace();
        let id = parts.next().unwrap_or_default().to_string();
        let hash = parts.next().unwrap_or_default().to_string();
        assert!(!id.is_empty() && hash.len() == 32, "{text:?}");
        if !self.made.contains(&id) {
            self.made.push(id.clone());
        }
        (id, hash)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The images, then any intermediate one a failed build left: the
        // generated Dockerfile labels every step after FROM with the name.
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.tag()])
            .args(&self.made)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let left = std::process::Command::new("docker")
            .args(["images", "-a", "-q", "--filter"])
            .arg(format!("label=bento.image={}", self.name))
            .output();
        if let Ok(left) = left {
            let mut ids: Vec<String> = out(&left).split_whitespace().map(String::from).collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rmi", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn both(o: &Output) -> String {
    format!("{}{}", out(o), err(o))
}

/// The function: the pip package (idna), the apt package's library
/// (libgomp, loaded and called) and the declared file.
const CODE: &str = r#"
import ctypes, idna

def main():
    omp = ctypes.CDLL("libgomp.so.1")
    words = open("/opt/data/words.txt").read().strip()
    return f"{idna.encode('bücher.example').decode()} threads>={min(omp.omp_get_max_threads(), 1)} {words}"
"#;

/// Runs [`CODE`] in the image through a controller and returns its output.
async fn run_in(scratch: &Scratch) -> (String, String) {
    let config = Config::load(Some(&scratch.config_path()))
        .unwrap_or_else(|e| panic!("the scratch config: {e}"));
    let spec = config
        .images
        .get(&scratch.name)
        .cloned()
        .unwrap_or_else(|| panic!("no image {} in the scratch config", scratch.name));
    let server = TestServer::start_with(|c| {
        c.images.insert(spec.name.clone(), spec);
    })
    .await;
    let body = SubmitFunction {
        code: CODE.into(),
        name: None,
        image: Some(scratch.name.clone()),
        filename: Some("uses_packages.py".into()),
    };
    let f = server
        .client
        .submit_function(&body)
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"));
    let (token, _) = server.session(&f.id, &[]).await;
    let mut att = server.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    server.stop().await;
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.exit.as_ref().map(|e| e.code), Some(0), "stderr: {stderr}");
    (r.data_strings().join("\n"), stderr)
}

/// Whether `image` can load libgomp by itself (then the apt step proves
/// less, and the test says so).
fn has_libgomp(image: &str) -> bool {
    std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
        ])
        .arg(image)
        .args(["-c", "import ctypes; ctypes.CDLL('libgomp.so.1')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_packages_build_run_skip_rebuild_and_fail_by_name() {
    // The python image (and, offline, the base it falls back to) first:
    // the controller below needs it, and the declared image's base is
    // chosen as the python image's is.
    kit::ensure_image().await;
    assert!(Path::new(HOST_CA).is_file(), "{HOST_CA} is missing");
    let mut s = Scratch::new();

    // 1. Built from nothing but the declaration.
    s.declare(&["idna"], "alpha beta\n");
    let first = s.build().await;
    let text = both(&first);
    eprintln!("first build:\n{text}");
    assert!(first.status.success(), "{text}");
    assert!(text.contains(&format!("built {}", s.tag())), "{text}");
    let base = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("built {} (base ", s.tag())))
        .and_then(|l| l.split(')').next())
        .unwrap_or_default()
        .to_string();
    if has_libgomp(&base) {
        eprintln!("note: the base {base} has libgomp already");
    }
    let (id1, hash1) = s.inspect();

    // 2. A function in it uses the pip package, the apt package and the file.
    let (output, _) = run_in(&s).await;
    assert_eq!(output, "xn--bcher-kva.example threads>=1 alpha beta");

    // 3. Unchanged: not built again, and it says so.
    let started = std::time::Instant::now();
    let again = s.build().await;
    eprintln!("unchanged build: {:.1}s", started.elapsed().as_secs_f64());
    let text = both(&again);
    assert!(again.status.success(), "{text}");
    assert!(
        text.contains(&format!("unchanged: {}", s.tag())) && text.contains("skipped"),
        "{text}"
    );
    assert!(!text.contains("Step "), "it built: {text}");
    assert_eq!(s.inspect(), (id1.clone(), hash1.clone()));

    // 4. A declared file changed: built again, with another hash.
    s.declare(&["idna"], "gamma delta\n");
    let changed = s.build().await;
    let text = both(&changed);
    eprintln!("changed build:\n{text}");
    assert!(changed.status.success(), "{text}");
    assert!(text.contains(&format!("built {}", s.tag())), "{text}");
    let (id2, hash2) = s.inspect();
    assert_ne!(id2, id1);
    assert_ne!(hash2, hash1);
    let (output, _) = run_in(&s).await;
    assert_eq!(output, "xn--bcher-kva.example threads>=1 gamma delta");

    // 5. A pip package that does not exist: the build fails, naming it,
    // with the log's last lines; the image stays as it was.
    let missing = format!("bento-no-such-package-{}", &s.name[8..]);
    s.declare(&["idna", &missing], "gamma delta\n");
    let failed = s.build().await;
    let text = both(&failed);
    eprintln!("failing build:\n{text}");
    assert_eq!(failed.status.code(), Some(1), "{text}");
    let stderr = err(&failed);
    assert!(
        stderr.contains(&format!("the package that failed: {missing}")),
        "{stderr}"
    );
    assert!(stderr.contains("recent build output:"), "{stderr}");
    assert!(
        stderr.contains(&format!("No matching distribution found for {missing}")),
        "{stderr}"
    );
    assert_eq!(s.inspect().0, id2);
}
