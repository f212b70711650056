//! The plain `docker run` baselines each figure is set beside: first
//! byte, and a stream piped to `wc -c`.

use super::*;

/// `echo | docker run --rm -i --network none ... python3 -c '<write x>'`:
/// ms from spawning it to the first byte on its stdout.
pub(super) fn docker_first_byte_ms() -> Res<f64> {
    let start = Instant::now();
    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--entrypoint",
            "python3",
        ])
        .arg(IMAGE)
        .args([
            "-c",
            "import sys; sys.stdout.write(\"x\"); sys.stdout.flush()",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ctx("spawn docker run")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"\n");
    }
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut byte = [0u8; 1];
    let n = stdout.read(&mut byte).ctx("read docker stdout")?;
    let elapsed = start.elapsed();
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let status = child.wait().ctx("wait docker run")?;
    if n != 1 || !status.success() {
        return Err(format!("docker run: {status}, read {n} byte(s)"));
    }
    Ok(elapsed.as_secs_f64() * 1000.0)
}

/// `bento run --raw FUNCTION TOTAL | wc -c` against the controller:
/// (seconds, MiB/s) of the whole pipeline, from spawning it.
pub(super) fn cli_throughput(url: &str, function: &str, total: u64) -> Res<(f64, f64)> {
    let mut bento = Command::new(env!("CARGO_BIN_EXE_bento"));
    bento
        .args(["run", "--raw", function, &total.to_string()])
        .env("BENTO_URL", url);
    piped_to_wc(bento, total)
}

/// Runs `producer | wc -c` and checks that `total` bytes came through:
/// (seconds, MiB/s) from spawning it to the end of both.
pub(super) fn piped_to_wc(mut producer: Command, total: u64) -> Res<(f64, f64)> {
    let start = Instant::now();
    let mut child = producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ctx("spawn the producer")?;
    let pipe = child.stdout.take().ok_or("no stdout")?;
    let wc = Command::new("wc")
        .arg("-c")
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .spawn()
        .ctx("spawn wc")?;
    let out = wc.wait_with_output().ctx("wc")?;
    let status = child.wait().ctx("wait for the producer")?;
    let secs = start.elapsed().as_secs_f64();
    let count: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ctx("wc output")?;
    if count != total || !status.success() {
        return Err(format!("{status}, {count} of {total} bytes"));
    }
    Ok((secs, total as f64 / MIB / secs))
}

/// `docker run --rm -i --log-driver none ... | wc -c`, `total` bytes written
/// with os.write in 64 KiB pieces: (seconds, MiB/s) of the whole pipeline.
pub(super) fn docker_throughput(total: u64) -> Res<(f64, f64)> {
    let code = format!(
        "import os\nb = b'x' * {CHUNK}\nfor _ in range({n}):\n    m = memoryview(b)\n    while m:\n        m = m[os.write(1, m):]\n",
        n = total / CHUNK
    );
    let mut docker = Command::new("docker");
    docker
        .args([
            "run",
            "--rm",
            "-i",
            "--log-driver",
            "none",
            "--network",
            "none",
            "--entrypoint",
            "python3",
        ])
        .arg(IMAGE)
        .args(["-c", &code]);
    piped_to_wc(docker, total).map_err(|e| format!("docker run: {e}"))
}
