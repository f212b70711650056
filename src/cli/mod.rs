//! The `bento` command line. [`Cli`] is the clap definition; [`run`] runs a
//! parsed command and returns the process exit code.
//!
//! Everything the user reads goes through [`say`]/[`out`], which never
//! panic on a closed pipe or terminal (unlike `println!`).

mod attach;
mod images;
mod io;
mod limits;
mod serve;
mod simple;
mod table;

use crate::client::{Client, DEFAULT_URL};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "bento",
    version,
    about = "Run untrusted Python functions in Docker containers, as sessions that outlive the connection"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Serve(ServeArgs),
    /// Build or list function images.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Store a function's code; prints its id.
    Submit(SubmitArgs),
    /// List stored functions.
    Functions {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a function in a new session and attach to it.
    Run(RunArgs),
    /// Attach to a running (or ended, undelivered) session.
    Attach(AttachArgs),
    /// List sessions.
    Ls {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Detach whoever is attached to a session; the function keeps running.
    Close {
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a session's function.
    Kill {
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where the controller is, for every client command.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// URL of the Bento server.
    #[arg(long, env = "BENTO_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// API key, sent as a bearer token.
    #[arg(long, env = "BENTO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.api_key.clone())?)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (default: config/bento.yaml if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides the config; default 127.0.0.1:7470).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where functions and session spools are kept (overrides the config).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build function images (all of them unless named).
    Build {
        names: Vec<String>,
        /// Config file (default: config/bento.yaml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List function images and whether they are built.
    Ls {
        /// Config file (default: config/bento.yaml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Python file defining `main`.
    pub file: PathBuf,
    /// Name to run it by (a later submit with the same name takes it over).
    #[arg(long)]
    pub name: Option<String>,
    /// Image to run it in (default: the server's default image).
    #[arg(long)]
    pub image: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How output is shown and whether to reconnect, for `run` and `attach`.
#[derive(Debug, Clone, Args)]
pub struct AttachFlags {
    /// Write data messages exactly as sent, without a newline after each.
    #[arg(long)]
    pub raw: bool,
    /// Do not reconnect when the connection drops.
    #[arg(long)]
    pub no_reconnect: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Function id or name.
    pub function: String,
    /// Arguments for `main(*args)`; each is decoded as JSON where it parses.
    /// Put them after `--` if they look like options.
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Do not attach: print the session token and return.
    #[arg(short, long)]
    pub detach: bool,
    /// Kill the function when no client has been attached for a while.
    #[arg(long)]
    pub transient: bool,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub flags: AttachFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Session token (from `bento run -d` or `bento ls`).
    pub token: String,
    /// Do not read stdin (and do not end the function's input).
    #[arg(long)]
    pub no_stdin: bool,
    #[command(flatten)]
    pub flags: AttachFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl Cli {
    /// The log filter when `RUST_LOG` is unset: the controller reports what
    /// it does; client commands stay quiet unless something is wrong.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

/// Runs a parsed command; returns the process exit code. Errors are
/// printed here as `bento: <message>`.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Images(ImagesCommand::Build { names, config }) => {
            images::build(&names, config.as_deref()).await
        }
        Command::Images(ImagesCommand::Ls { config }) => images::list(config.as_deref()).await,
        Command::Submit(args) => simple::submit(args).await,
        Command::Functions { server } => simple::functions(&server).await,
        Command::Run(args) => attach::run(args).await,
        Command::Attach(args) => attach::attach(args).await,
        Command::Ls { server } => simple::sessions(&server).await,
        Command::Close { token, server } => simple::close(&token, &server).await,
        Command::Kill { token, server } => simple::kill(&token, &server).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say(&format!("bento: {e:#}"));
            1
        }
    }
}

/// One line on stderr; a closed stderr is not worth dying for.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One line on stdout, failing (instead of panicking) on a closed pipe.
pub(crate) fn out(line: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bento").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_flags_anywhere_and_args_after_dashes() -> Result<(), clap::Error> {
        let Command::Run(r) = parse(&["run", "f", "1", "-2", "-d", "--raw", "x"])?.command else {
            panic!("not run");
        };
        assert!(r.detach && r.flags.raw);
        assert_eq!(r.function, "f");
        assert_eq!(r.args, ["1", "-2", "x"]);

        let Command::Run(r) = parse(&["run", "--transient", "f", "--", "--raw", "-x"])?.command
        else {
            panic!("not run");
        };
        assert!(r.transient && !r.flags.raw);
        assert_eq!(r.args, ["--raw", "-x"]);
        assert!(parse(&["run", "f", "--bogus"]).is_err());

        let Command::Run(r) = parse(&["run", "f", "--memory", "64m", "--timeout", "30s"])?.command
        else {
            panic!("not run");
        };
        assert_eq!(r.limits.request().memory, Some(64 << 20));
        assert_eq!(
            r.limits.request().timeout,
            Some(std::time::Duration::from_secs(30))
        );
        Ok(())
    }
}
