//! The `bento` binary: parse the command line, set up logging, run.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = bento::cli::parse();
    // Logs go to stderr so they never mix with output scripts read (ids,
    // tokens, the function's output).
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_filter()));
    // The WebSocket handshake's trace lines print the request: its URL holds
    // the session token and its headers the API key. Never log them, even
    // at RUST_LOG=trace.
    for secret_bearing in ["tungstenite::handshake=off", "tokio_tungstenite=off"] {
        if let Ok(d) = secret_bearing.parse() {
            filter = filter.add_directive(d);
        }
    }
    // A certificate it refuses is logged as an ERROR by the verifier, and
    // then reported again, with a hint, as the command's own error.
    if let Ok(d) = "rustls_platform_verifier=off".parse() {
        filter = filter.add_directive(d);
    }
    // Colours only on a terminal: a log file or journald would get the
    // escape codes as text. NO_COLOR is honoured as everywhere else.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cli.log_format {
        bento::cli::LogFormat::Json => builder.json().init(),
        bento::cli::LogFormat::Human => builder.init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bento: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // On a worker, not on this thread: a command's own tasks (an
    // attachment's connection, say) then wake it without a hop between
    // threads, as `bento run` does once per message.
    let code = match rt.block_on(rt.spawn(bento::cli::run(cli))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bento: {e}");
            1
        }
    };
    // Exit with the runtime still alive: dropping it waits for its blocking
    // tasks, and a read of stdin is one, so an attach whose function ended
    // (or that was taken over) would hang until the next line typed.
    std::process::exit(code);
}
