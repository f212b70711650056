//! `bento serve`: load the config, bind, run the controller until a signal.

use super::{say, ServeArgs};
use crate::config::Config;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    raise_open_file_limit();
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    spawn_signal_watch(shutdown.clone())?;
    crate::controller::run(listener, config, shutdown).await?;
    Ok(0)
}

/// Every client connection, session and spool file takes a descriptor:
/// use all the kernel allows this process (the connection cap is derived
/// from the result). Failing to raise it is not fatal; the cap follows
/// whatever the limit is.
fn raise_open_file_limit() {
    match crate::controller::nofile::raise() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit (nofile) to the hard limit"
            );
        }
        Ok((_, after)) => tracing::info!(
            limit = after,
            "open-file limit (nofile) is at the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit (nofile)"),
    }
}

/// The first SIGINT or SIGTERM shuts down gracefully (functions keep
/// running in their containers); a second one exits at once, for when the
/// graceful way hangs.
fn spawn_signal_watch(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            seen += 1;
            if seen == 1 {
                tracing::info!("shutting down; signal again to exit at once");
                shutdown.cancel();
            } else {
                say("bento: exiting without a graceful shutdown");
                std::process::exit(code);
            }
        }
    });
    Ok(())
}
