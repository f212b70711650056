//! The `bento` command line. [`Cli`] is the clap definition; [`run`] runs a
//! parsed command and returns the process exit code.
//!
//! Everything the user reads goes through `say`/`out`, which never
//! panic on a closed pipe or terminal (unlike `println!`).

mod args;
mod attach;
mod color;
mod env;
mod functions;
mod hints;
mod history;
mod images;
mod inspect;
mod io;
mod limits;
mod logs;
mod remove;
mod render;
mod resolve;
mod secrets;
mod serve;
mod simple;
mod table;
mod tenants;
mod time;
mod usage;
mod writer;

pub use args::{
    AttachArgs, AttachFlags, ForkArgs, FunctionsArgs, FunctionsCommand, ImagesCommand, InspectArgs,
    JsonFlag, LogsArgs, LsFilter, RunArgs, ServeArgs, ServerArgs, SubmitArgs,
};
use clap::{Parser, Subcommand};
use std::io::Write;

#[derive(Debug, Parser)]
#[command(
    name = "bento",
    version,
    about = "Run untrusted Python functions in Docker containers, as sessions that outlive the connection"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: `human`, or `json` (one object per line, for
    /// log collectors). Levels follow RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "BENTO_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
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
    /// List stored functions; `show` or `rm` one.
    Functions(FunctionsArgs),
    /// Start a function in a new session and attach to it.
    Run(RunArgs),
    /// Attach to a running (or ended, undelivered) session.
    Attach(AttachArgs),
    /// Fork a session: a new session replayed to its state (the same
    /// function and args fed the same input; docs/fork.md), then attach.
    Fork(ForkArgs),
    /// List sessions (tokens shortened to 12 characters; any unique prefix
    /// of at least 6, or the `s-…` id, works wherever a token is taken).
    Ls {
        #[command(flatten)]
        json: JsonFlag,
        /// Show whole tokens.
        #[arg(long)]
        no_trunc: bool,
        #[command(flatten)]
        filter: LsFilter,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one session: state, limits, timings, what it still holds.
    Inspect(InspectArgs),
    /// Print the output a session still holds, without taking it over.
    Logs(LogsArgs),
    /// Detach whoever is attached to a session; the function keeps running.
    Close {
        /// Session token, a unique prefix of it (6+ characters), or its s-… id.
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a session's function; returns once it has ended.
    Kill {
        /// Session token, a unique prefix of it (6+ characters), or its s-… id.
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Move a session's deadline later (within its image's maximum
    /// timeout); prints the new deadline (docs/leases.md).
    Extend {
        /// Session token, a unique prefix of it (6+ characters), or its s-… id.
        token: String,
        /// How much later, like 30m or 2h.
        #[arg(value_parser = limits::parse_timeout)]
        by: std::time::Duration,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove ended sessions, discarding the output nobody read.
    Rm {
        /// Session tokens, unique prefixes of them (6+ characters), or s-… ids.
        #[arg(required = true)]
        tokens: Vec<String>,
        /// Kill a session that still runs first (otherwise it is refused).
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove every ended session nobody is attached to, discarding its
    /// unread output.
    Prune {
        /// Do not ask first (required when stdin is not a terminal).
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Store, list or remove secrets, which `bento run --secret` gives to
    /// functions as environment variables (docs/env.md).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Add or list tenants, each with its own functions, sessions, history
    /// and quotas (docs/tenants.md).
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Make, list or revoke a tenant's API keys (docs/tenants.md).
    #[command(subcommand)]
    Keys(tenants::KeysCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to print them for.
        shell: clap_complete::Shell,
    },
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

/// Parses the process's arguments (exiting with clap's message when they
/// are wrong), noting where the server URL came from for the hints.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    hints::note_url_origin(&matches);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs a parsed command; returns the process exit code. Errors are
/// printed here as `bento: <message>`.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Images(ImagesCommand::Build {
            names,
            config,
            force,
        }) => images::build(&names, config.as_deref(), force).await,
        Command::Images(ImagesCommand::Ls { config, json }) => {
            images::list(config.as_deref(), json.json).await
        }
        Command::Submit(args) => simple::submit(args).await,
        Command::Functions(args) => functions::run(args).await,
        Command::Run(args) => attach::run(args).await,
        Command::Attach(args) => attach::attach(args).await,
        Command::Fork(args) => attach::fork(args).await,
        Command::Ls {
            json,
            no_trunc,
            filter,
            server,
        } if filter.is_set() => history::list(&server, json.json, no_trunc, &filter).await,
        Command::Ls {
            json,
            no_trunc,
            server,
            ..
        } => simple::sessions(&server, json.json, no_trunc).await,
        Command::Inspect(args) => inspect::inspect(args).await,
        Command::Logs(args) => logs::logs(args).await,
        Command::Close { token, server } => simple::close(&token, &server).await,
        Command::Kill { token, server } => remove::kill(&token, &server).await,
        Command::Extend { token, by, server } => simple::extend(&token, by, &server).await,
        Command::Rm {
            tokens,
            force,
            server,
        } => remove::rm(&tokens, force, &server).await,
        Command::Prune { force, server } => remove::prune(force, &server).await,
        Command::Secrets(cmd) => secrets::run(cmd).await,
        Command::Tenants(cmd) => tenants::tenants(cmd).await,
        Command::Keys(cmd) => tenants::keys(cmd).await,
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say(&format!("bento: {e:#}"));
            if let Some(hint) = hints::for_error(&e) {
                say(&format!("hint: {hint}"));
            }
            1
        }
    }
}

/// `bento completions SHELL`: generated into memory first, because
/// clap_complete panics when its writer fails (a closed pipe).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bento", &mut script);
    let mut o = std::io::stdout().lock();
    o.write_all(&script)?;
    o.flush()?;
    Ok(0)
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

    /// `--help` describes every positional argument of every command.
    #[test]
    fn every_positional_argument_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_positionals() {
                let described = arg
                    .get_help()
                    .or(arg.get_long_help())
                    .is_some_and(|h| !h.to_string().trim().is_empty());
                if !described {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "bento", &mut missing);
        assert!(missing.is_empty(), "positionals without help: {missing:?}");
        // The walk does reach them.
        let run = cmd
            .find_subcommand("run")
            .map(|r| r.get_positionals().count());
        assert_eq!(run, Some(2));
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
    #[test]
    fn listing_commands_take_json_and_logs_takes_follow() -> Result<(), clap::Error> {
        assert!(matches!(parse(&["ls", "--json"])?.command, Command::Ls { json, .. } if json.json));
        assert!(matches!(
            parse(&["functions", "--json"])?.command,
            Command::Functions(a) if a.json.json && a.command.is_none()
        ));
        assert!(matches!(
            parse(&["functions", "rm", "a", "b"])?.command,
            Command::Functions(FunctionsArgs {
                command: Some(FunctionsCommand::Rm { functions, .. }),
                ..
            }) if functions == ["a", "b"]
        ));
        assert!(parse(&["functions", "rm"]).is_err());
        assert!(matches!(
            parse(&["functions", "show", "f", "--json"])?.command,
            Command::Functions(FunctionsArgs {
                command: Some(FunctionsCommand::Show { function, json, .. }),
                ..
            }) if function == "f" && json.json
        ));
        assert!(matches!(
            parse(&["images", "build", "science", "--force"])?.command,
            Command::Images(ImagesCommand::Build { names, force: true, .. }) if names == ["science"]
        ));
        assert!(matches!(
            parse(&["images", "ls", "--json"])?.command,
            Command::Images(ImagesCommand::Ls { json, .. }) if json.json
        ));
        assert!(matches!(
            parse(&["inspect", "t", "--json"])?.command,
            Command::Inspect(a) if a.json.json && a.token == "t"
        ));
        assert!(matches!(
            parse(&["logs", "-f", "t", "--raw"])?.command,
            Command::Logs(a) if a.follow && a.raw
        ));
        assert!(matches!(
            parse(&["completions", "zsh"])?.command,
            Command::Completions {
                shell: clap_complete::Shell::Zsh
            }
        ));
        assert!(parse(&["completions", "tcsh"]).is_err());
        Ok(())
    }
}
