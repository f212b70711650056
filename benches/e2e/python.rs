//! The Python client library (`clients/python`) against the CLI, through
//! `clients/python/bench/bench.py` on a controller whose python image keeps
//! a warm pool of 2: throughput on one stream (1 GiB; 100 MiB quick) read
//! by the sync and the async client and by `bento run --raw`, each client's
//! CPU per GiB, and warm first byte (medians, interleaved).
//!
//! It runs in the venv `cargo test --test python_client` makes
//! (`target/python-venv`); without it the part says so and is skipped.

use super::report::size;
use super::*;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub(super) struct PythonFigures {
    pub bytes: u64,
    pub lib_mib_s: f64,
    pub async_lib_mib_s: f64,
    pub cli_mib_s: f64,
    pub lib_cpu_s_per_gib: f64,
    pub cli_cpu_s_per_gib: f64,
    pub lib_first_byte_ms: f64,
    pub cli_first_byte_ms: f64,
}

fn venv_python() -> Option<PathBuf> {
    // CARGO_BIN_EXE_bento is TARGET/PROFILE/bento.
    let target = PathBuf::from(env!("CARGO_BIN_EXE_bento"))
        .parent()?
        .parent()?
        .to_path_buf();
    let python = target.join("python-venv/bin/python");
    python.exists().then_some(python)
}

pub(super) async fn measure(plan: &Plan) -> Figure<PythonFigures> {
    let Some(python) = venv_python() else {
        return Err(
            "skipped: no target/python-venv (`cargo test --test python_client` makes it)".into(),
        );
    };
    let mut c = Controller::start(2).await?;
    let (bytes, runs) = if plan.quick {
        (100u64 << 20, 3)
    } else {
        (1u64 << 30, 10)
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/python/bench/bench.py");
    let url = c.url.clone();
    progress!("python: {} through the library and the CLI", size(bytes));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([&url, env!("CARGO_BIN_EXE_bento")])
            .args(["--bytes", &bytes.to_string(), "--runs", &runs.to_string()])
            .stdin(Stdio::null())
            .output()
    })
    .await
    .ctx("join")?
    .ctx("bench.py")?;
    c.stop();
    if !out.status.success() {
        return Err(format!(
            "bench.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().ok_or("bench.py printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(line).ctx("bench.py's JSON")?;
    let f = |k: &str| -> Res<f64> {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("bench.py gave no {k}: {line}"))
    };
    let figures = PythonFigures {
        bytes,
        lib_mib_s: f("lib_mib_s")?,
        async_lib_mib_s: f("async_lib_mib_s")?,
        cli_mib_s: f("cli_mib_s")?,
        lib_cpu_s_per_gib: f("lib_cpu_s_per_gib")?,
        cli_cpu_s_per_gib: f("cli_cpu_s_per_gib")?,
        lib_first_byte_ms: f("lib_first_byte_ms")?,
        cli_first_byte_ms: f("cli_first_byte_ms")?,
    };
    progress!("python: {line}");
    Ok(figures)
}
