//! `bento secrets set|ls|rm`: the controller's secret store (docs/env.md).
//! Values go in and never come back out.

use anyhow::Context;
use clap::Subcommand;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use super::args::{JsonFlag, ServerArgs};
use super::{out, say};
use crate::config::env::MAX_VALUE;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret, read from stdin or --file (one trailing newline is
    /// dropped). Replaces one of the same name.
    Set {
        /// Its name: letters, digits, '_', '-' or '.'; `bento run --secret
        /// NAME` gives it to a function.
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List secrets by name (values are never shown).
    Ls {
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove secrets; sessions already started keep their copy.
    Rm {
        /// The secrets to remove, by name.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) async fn run(cmd: SecretsCommand) -> anyhow::Result<i32> {
    match cmd {
        SecretsCommand::Set { name, file, server } => {
            let value = read_value(file.as_deref())?;
            let client = server.client()?;
            let created = client.set_secret(&name, value).await?;
            say(&format!(
                "secret {name} {}",
                if created { "stored" } else { "replaced" }
            ));
            Ok(0)
        }
        SecretsCommand::Ls { json, server } => {
            let secrets = server.client()?.list_secrets().await?;
            if json.json {
                out(&serde_json::to_string_pretty(&secrets)?)?;
            } else if secrets.is_empty() {
                say("no secrets (bento secrets set NAME stores one)");
            } else {
                let mut table = String::from("NAME                             UPDATED\n");
                for s in &secrets {
                    table.push_str(&format!(
                        "{:<32} {}\n",
                        s.name,
                        super::time::ago(s.updated_at)
                    ));
                }
                out(table.trim_end())?;
            }
            Ok(0)
        }
        SecretsCommand::Rm { names, server } => {
            let client = server.client()?;
            for name in &names {
                client
                    .delete_secret(name)
                    .await
                    .with_context(|| format!("secret {name}"))?;
                say(&format!("secret {name} removed"));
            }
            Ok(0)
        }
    }
}

/// The value, from the file or stdin, without one trailing newline (what
/// `echo` and editors add, and never meant as part of a key).
fn read_value(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let limit = MAX_VALUE as u64 + 2;
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("--file {}", path.display()))?
                .take(limit)
                .read_to_end(&mut bytes)?;
        }
        None => {
            if std::io::stdin().is_terminal() {
                say("type the secret's value, then Enter and Ctrl-D:");
            }
            std::io::stdin()
                .lock()
                .take(limit)
                .read_to_end(&mut bytes)?;
        }
    }
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.pop();
    }
    if bytes.len() > MAX_VALUE {
        anyhow::bail!("the value is over {MAX_VALUE} bytes");
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the value must be UTF-8 text"))
}
