//! The Python client library (`clients/python/`), driven from `cargo test`:
//! a venv under `target/python-venv` (made once, and again when
//! `clients/python/pyproject.toml` changes) with the library installed
//! editable and its test extras from PyPI; then `mypy --strict` over the
//! package, for this Python and for the oldest it allows (3.9, against
//! its dependencies as pip resolves them for 3.9: `target/python-oldest-deps`),
//! then its pytest suites (which run the examples in
//! `examples/python/` too) against `bento serve` of this build on the real
//! Docker engine.
//!
//! Without `python3 -m venv` or PyPI the test says SKIPPED and why;
//! `BENTO_PYTHON_TESTS=require` (as `.ci/run` sets it) fails instead.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/` of this build: the binary is `target/<profile>/bento`.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_bento"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo().join("target"))
}

fn required() -> bool {
    std::env::var("BENTO_PYTHON_TESTS").as_deref() == Ok("require")
}

/// A prerequisite is missing: a skip here, a failure where required.
fn skip(why: &str) {
    if required() {
        panic!("the Python client suite cannot run (BENTO_PYTHON_TESTS=require): {why}");
    }
    eprintln!("SKIPPED: the Python client suite cannot run here: {why}");
}

fn text(o: &Output) -> String {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    };
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        tail(&o.stdout),
        tail(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

/// The whole pytest run takes a minute or two; past this it is stuck.
const SUITE_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Runs `cmd` with its output in files (no pipe to drain), stopped past
/// `deadline` with its process group (the controllers it started too).
fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file(&out)?)
        .stderr(file(&err)?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if Instant::now() >= until {
            // Ctrl-C first: pytest then runs its teardown, which stops the
            // controllers and removes their containers; SIGKILL after a
            // minute. SAFETY: signals the process group of our own child.
            let group = -(child.id() as i32);
            unsafe { libc::kill(group, libc::SIGINT) };
            let grace = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(200));
            }
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = child.wait();
            let said = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
            return Err(format!(
                "pytest was still running after {}s; killed. stdout:\n{}\nstderr:\n{}",
                deadline.as_secs(),
                said(&out),
                said(&err)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    })
}

/// What the venv was made from; a different stamp makes it again.
fn stamp() -> String {
    let pyproject =
        std::fs::read_to_string(repo().join("clients/python/pyproject.toml")).unwrap_or_default();
    format!("v1\n{pyproject}")
}

/// pip install of `what`, once more with the host's CA bundle if PyPI's
/// certificate did not verify against pip's own (a TLS-intercepting proxy,
/// say).
fn pip_install(python: &Path, what: &[&str]) -> Result<(), String> {
    let install = |cert: Option<&str>| {
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--timeout", "60", "--retries", "3"])
        .current_dir(repo());
        if let Some(c) = cert {
            cmd.args(["--cert", c]);
        }
        cmd.args(what);
        run(&mut cmd)
    };
    let first = install(None)?;
    if first.status.success() {
        return Ok(());
    }
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let said = text(&first);
    if said.contains("CERTIFICATE_VERIFY_FAILED") && Path::new(bundle).exists() {
        let again = install(Some(bundle))?;
        if again.status.success() {
            return Ok(());
        }
        return Err(format!(
            "pip install failed (with --cert {bundle}):\n{}",
            text(&again)
        ));
    }
    Err(format!("pip install failed:\n{said}"))
}

/// The venv's python, made and filled if needed; `Err` says what is missing.
fn venv() -> Result<PathBuf, String> {
    let dir = target_dir().join("python-venv");
    let python = dir.join("bin/python");
    let stamp_file = dir.join("bento-stamp");
    if python.exists() && std::fs::read_to_string(&stamp_file).ok() == Some(stamp()) {
        return Ok(python);
    }
    let version = run(Command::new("python3").args([
        "-c",
        "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
    ]))?;
    if !version.status.success() {
        return Err("python3 is older than 3.9".into());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv does not work (on Debian: apt-get install python3-venv):\n{}",
            text(&made)
        ));
    }
    pip_install(&python, &["-e", "./clients/python[test]"])?;
    std::fs::write(&stamp_file, stamp()).map_err(|e| format!("write the venv's stamp: {e}"))?;
    Ok(python)
}

/// The oldest Python `pyproject.toml` allows (`requires-python`).
const OLDEST: &str = "3.9";

/// A Python whose site-packages hold the library's dependencies as pip
/// resolves them for Python [`OLDEST`] (wheels only: they are pure
/// Python), for `mypy --python-version 3.9`. The newest versions of some
/// (websockets, anyio) use syntax 3.9 lacks, so the suite's own venv will
/// not do. Only mypy reads it: it is a venv of this python3 without pip,
/// filled by the suite venv's pip with `--target`.
fn oldest_deps(python: &Path) -> Result<PathBuf, String> {
    let dir = target_dir().join("python-oldest-deps");
    let py = dir.join("bin/python");
    let stamp_file = dir.join("bento-stamp");
    let want = format!("{OLDEST}\n{}", stamp());
    if py.exists() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(want.as_str()) {
        return Ok(py);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = run(Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&dir))?;
    if !made.status.success() {
        return Err(format!("python3 -m venv --without-pip:\n{}", text(&made)));
    }
    let asked = |code: &str, who: &Path| -> Result<String, String> {
        let o = run(Command::new(who)
            .args(["-c", code])
            .current_dir(repo().join("clients/python")))?;
        if !o.status.success() {
            return Err(format!("{} -c {code}:\n{}", who.display(), text(&o)));
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let site = asked(
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        &py,
    )?;
    // pyproject.toml's dependencies, read by the suite's python (3.11+
    // has tomllib; pip brings its own copy of tomli for older ones).
    let deps = asked(
        "try:\n import tomllib\nexcept ImportError:\n from pip._vendor import tomli as tomllib\n\
         print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))",
        python,
    )?;
    let mut args = vec![
        "--target",
        site.as_str(),
        "--python-version",
        OLDEST,
        "--only-binary=:all:",
    ];
    args.extend(deps.lines());
    pip_install(python, &args)?;
    std::fs::write(&stamp_file, want).map_err(|e| format!("write the stamp: {e}"))?;
    Ok(py)
}

#[test]
fn python_client_suite() {
    let python = match venv() {
        Ok(p) => p,
        Err(why) => return skip(&why),
    };
    let pkg = repo().join("clients/python");

    let mypy = run(Command::new(&python)
        .args(["-m", "mypy", "--strict", "src/bento_client"])
        .current_dir(&pkg))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        mypy.status.success(),
        "mypy --strict over bento_client:\n{}",
        text(&mypy)
    );
    // The same for the oldest Python the package allows: its syntax, its
    // standard library's typing, and the dependencies as they are there.
    let oldest = oldest_deps(&python).unwrap_or_else(|e| panic!("{e}"));
    let mypy = run(Command::new(&python)
        .args(["-m", "mypy", "--strict", "--python-version", OLDEST])
        .arg("--python-executable")
        .arg(&oldest)
        .arg("src/bento_client")
        .current_dir(&pkg))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        mypy.status.success(),
        "mypy --strict --python-version {OLDEST} over bento_client:\n{}",
        text(&mypy)
    );

    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .env("BENTO_BIN", env!("CARGO_BIN_EXE_bento"))
        .env_remove("BENTO_URL")
        .env_remove("BENTO_API_KEY")
        .current_dir(&pkg);
    let pytest = run_with_deadline(&mut cmd, SUITE_DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pytest.status.success(),
        "the Python client's pytest suites failed:\n{}",
        text(&pytest)
    );
    eprintln!(
        "{}",
        String::from_utf8_lossy(&pytest.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
}
