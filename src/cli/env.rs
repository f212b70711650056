//! `bento run`'s environment flags: `-e KEY[=VALUE]`, `--env-file FILE` and
//! `--secret NAME[=VAR]`, turned into the API's `env` and `secrets`.

use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::wire::api::SecretUse;

/// The most an `--env-file` may be: far beyond any environment the server
/// takes (256 KiB), so its own error says what is wrong.
const MAX_ENV_FILE: u64 = 1 << 20;

#[derive(Debug, Clone, Default, Args)]
pub struct EnvArgs {
    /// Set an environment variable for the function (repeatable). KEY alone
    /// passes this shell's value of KEY. Over the image's `env:`.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read variables from a file: KEY=VALUE lines, # comments and blank
    /// lines ignored, KEY alone as for -e (repeatable; -e wins).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Give the function a stored secret (bento secrets set) as the
    /// variable VAR, or as NAME itself (repeatable). Its value never shows.
    #[arg(long, value_name = "NAME[=VAR]")]
    pub secret: Vec<String>,
}

impl EnvArgs {
    /// The variables and secrets asked for. Names are checked by the server
    /// (which knows the reserved ones); here only the syntax.
    pub fn request(&self) -> anyhow::Result<(BTreeMap<String, String>, Vec<SecretUse>)> {
        let mut vars = BTreeMap::new();
        for file in &self.env_file {
            let text = read_env_file(file)?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim_start();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = pair(line, |k| std::env::var(k).ok())
                    .with_context(|| format!("{}:{}", file.display(), n + 1))?;
                if let Some(v) = v {
                    vars.insert(k, v);
                }
            }
        }
        for e in &self.env {
            let (k, v) = pair(e, |k| std::env::var(k).ok()).with_context(|| format!("-e {e}"))?;
            if let Some(v) = v {
                vars.insert(k, v);
            }
        }
        let secrets = self
            .secret
            .iter()
            .map(|s| match s.split_once('=') {
                Some((name, var)) if !name.is_empty() && !var.is_empty() => Ok(SecretUse {
                    name: name.into(),
                    env: Some(var.into()),
                }),
                None if !s.is_empty() => Ok(SecretUse {
                    name: s.clone(),
                    env: None,
                }),
                _ => anyhow::bail!("--secret {s:?}: expected NAME or NAME=VAR"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((vars, secrets))
    }
}

/// `KEY=VALUE`, or `KEY` alone: the value `lookup` finds for it, and none
/// (the variable is left out, as `docker run -e` does) when it finds none.
fn pair(
    s: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, Option<String>)> {
    match s.split_once('=') {
        Some(("", _)) => anyhow::bail!("expected KEY=VALUE, with a KEY"),
        Some((k, v)) => Ok((k.to_owned(), Some(v.to_owned()))),
        None => Ok((s.to_owned(), lookup(s))),
    }
}

fn read_env_file(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("--env-file {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_ENV_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("--env-file {} (it must be UTF-8 text)", path.display()))?;
    if text.len() as u64 > MAX_ENV_FILE {
        anyhow::bail!(
            "--env-file {} is over {} bytes",
            path.display(),
            MAX_ENV_FILE
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_and_bare_keys_are_looked_up() {
        let none = |_: &str| None;
        assert_eq!(
            pair("A=b=c", none).unwrap(),
            ("A".into(), Some("b=c".into()))
        );
        assert_eq!(pair("A=", none).unwrap(), ("A".into(), Some(String::new())));
        assert_eq!(pair("A", none).unwrap(), ("A".into(), None));
        assert_eq!(
            pair("A", |_| Some("from-shell".into())).unwrap(),
            ("A".into(), Some("from-shell".into()))
        );
        assert!(pair("=x", none).is_err());
    }

    #[test]
    fn files_then_flags_and_secrets_parse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "# comment\n\nA=file\nB=file\n  C=spaced=ok\n").unwrap();
        let args = EnvArgs {
            env: vec!["B=flag".into()],
            env_file: vec![file],
            secret: vec!["db".into(), "api=API_KEY".into()],
        };
        let (vars, secrets) = args.request().unwrap();
        assert_eq!(vars["A"], "file");
        assert_eq!(vars["B"], "flag", "-e wins over the file");
        assert_eq!(vars["C"], "spaced=ok");
        assert_eq!(secrets[0].var(), "db");
        assert_eq!(secrets[1].name, "api");
        assert_eq!(secrets[1].var(), "API_KEY");
        let bad = EnvArgs {
            secret: vec!["x=".into()],
            ..Default::default()
        };
        assert!(bad.request().is_err());
    }
}
