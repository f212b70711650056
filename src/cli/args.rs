//! The arguments of each subcommand (the clap definitions [`super::Cli`]
//! is built from).

use super::limits;
use crate::client::{Client, DEFAULT_URL};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    pub(super) fn client(&self) -> anyhow::Result<Client> {
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
        /// Images to build, by name (config/images/NAME.yaml); all if none.
        names: Vec<String>,
        /// Config file (default: config/bento.yaml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Build even an image whose build hash says it is unchanged (e.g.
        /// to pick up new releases of unpinned pip packages).
        #[arg(long)]
        force: bool,
    },
    /// List function images and whether they are built.
    Ls {
        /// Config file (default: config/bento.yaml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `bento functions`: a listing by default, or one of its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FunctionsArgs {
    #[command(subcommand)]
    pub command: Option<FunctionsCommand>,
    #[command(flatten)]
    pub json: JsonFlag,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum FunctionsCommand {
    /// List stored functions (the same as `bento functions`).
    Ls {
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one function.
    Show {
        /// Function id, or name (the newest function with that name).
        function: String,
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete functions; sessions already running them keep running.
    Rm {
        /// Function ids, or names (the newest function with that name).
        #[arg(required = true)]
        functions: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Python file to run. It may define `main`, which is then called with
    /// the arguments of `bento run`; without one the file just runs. Code
    /// that does not compile is refused, as FILE:LINE:COL: message.
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
    /// Write output exactly as sent: no newline after each data message,
    /// and control characters (escape sequences) passed to the terminal
    /// instead of shown as text.
    #[arg(long)]
    pub raw: bool,
    /// Do not reconnect when the connection drops.
    #[arg(long)]
    pub no_reconnect: bool,
    /// After the function's exit, print what it used (CPU, peak memory,
    /// processes, wall time, as the engine measured) on stderr.
    #[arg(long)]
    pub usage: bool,
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
    pub env: super::env::EnvArgs,
    /// Keep no input history: the session cannot be forked (saves the disk
    /// it takes, up to fork_history_max).
    #[arg(long)]
    pub no_fork: bool,
    #[command(flatten)]
    pub flags: AttachFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The session to fork: token, a unique prefix of it (6+ characters),
    /// or its s-… id.
    pub token: String,
    /// Fork it as it was after this many inputs (default: all it has
    /// applied).
    #[arg(long, value_name = "K")]
    pub at_input: Option<u64>,
    /// When the replay does not reproduce the parent's output: `kill` (the
    /// default) ends the fork, `continue` goes on, marked diverged.
    #[arg(long, value_name = "WHAT", value_parser = ["kill", "continue"])]
    pub on_divergence: Option<String>,
    /// Do not attach: print the new session's token and return.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: AttachFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Session token, a unique prefix of it (6+ characters), or its s-… id.
    pub token: String,
    /// Do not read stdin (and do not end the function's input).
    #[arg(long)]
    pub no_stdin: bool,
    #[command(flatten)]
    pub flags: AttachFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What `bento ls` lists beyond the live sessions, and its filters.
#[derive(Debug, Clone, Default, Args)]
pub struct LsFilter {
    /// Also list reaped sessions (their records: `GET /v1/history`),
    /// oldest first after the live ones, which have a token to show; a
    /// reaped one shows its s-… id.
    #[arg(short, long)]
    pub all: bool,
    /// Only sessions in this state: starting, resuming, running, ended or
    /// reaped (reaped implies --all).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only sessions of this function (id or name).
    #[arg(long, value_name = "FUNCTION")]
    pub function: Option<String>,
    /// Only sessions created within this long ago (30s, 15m, 1h, 2d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only sessions created before this long ago.
    #[arg(long, value_name = "DURATION")]
    pub until: Option<String>,
    /// At most this many reaped sessions (the newest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl LsFilter {
    pub fn is_set(&self) -> bool {
        self.all
            || self.state.is_some()
            || self.function.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.limit.is_some()
    }
}

/// `--json`, for the commands that list or inspect.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// Print the API's JSON instead of a table, and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Session token, a unique prefix of it (6+ characters), or its s-… id.
    pub token: String,
    #[command(flatten)]
    pub json: JsonFlag,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Session token, a unique prefix of it (6+ characters), or its s-… id.
    pub token: String,
    /// Keep watching for new output until the function ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Write output exactly as sent: no newline after each data message,
    /// and control characters (escape sequences) passed to the terminal
    /// instead of shown as text.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}
