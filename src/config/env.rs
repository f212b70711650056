//! What a function's environment may hold: the rules for variable names and
//! values, shared by the image YAML (`env:`), the API (`env`, `secrets`)
//! and the CLI, and the merge of the three (`docs/env.md`).
//!
//! The environment reaches the function in the driver's START message, not
//! in the container's spec: a warm container was started before its session
//! existed, and a secret in `Config.Env` would show in `docker inspect` (and
//! in a Swarm service's spec, which every manager keeps).

use std::collections::BTreeMap;
use std::fmt;

/// Variables one session may be given, all sources together.
pub const MAX_VARS: usize = 256;
/// Bytes of one name.
pub const MAX_NAME: usize = 128;
/// Bytes of one value (a secret's too).
pub const MAX_VALUE: usize = 64 << 10;
/// Bytes of names and values together: well inside the 4 MiB a START may
/// hold beside the code (1 MiB) and its arguments.
pub const MAX_TOTAL: usize = 256 << 10;

/// Names the driver keeps for itself: `BENTO_*`, and the variable the
/// image's read-only root relies on (no bytecode written at run time).
pub const RESERVED_PREFIX: &str = "BENTO_";
const RESERVED: &[&str] = &["PYTHONDONTWRITEBYTECODE"];

/// A variable name as POSIX shells accept it: a letter or `_`, then letters,
/// digits and `_`.
pub fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Why a name or value is refused. The message names the variable, never
/// its value (which may be a secret).
pub fn check_var(name: &str, value: &str) -> Result<(), String> {
    if !valid_env_name(name) {
        return Err(format!(
            "{:?} is not a valid environment variable name: a letter or _, then letters, \
             digits and _, at most {MAX_NAME} bytes",
            truncate(name)
        ));
    }
    if name.starts_with(RESERVED_PREFIX) || RESERVED.contains(&name) {
        return Err(format!(
            "{name} is reserved for Bento's driver (names starting with {RESERVED_PREFIX} \
             and {}); choose another name",
            RESERVED.join(", ")
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(format!(
            "the value of {name} is {} bytes; the most is {MAX_VALUE}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "the value of {name} contains a NUL byte, which no environment can hold"
        ));
    }
    Ok(())
}

/// Checks a whole set of variables: each one, their count and their size.
pub fn check_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
    let (mut count, mut total) = (0usize, 0usize);
    for (name, value) in vars {
        check_var(name, value)?;
        count += 1;
        total = total.saturating_add(name.len() + value.len());
    }
    if count > MAX_VARS {
        return Err(format!(
            "{count} environment variables; the most is {MAX_VARS}"
        ));
    }
    if total > MAX_TOTAL {
        return Err(format!(
            "the environment comes to {total} bytes; the most is {MAX_TOTAL}"
        ));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A function's environment, ready for START. Its `Debug` shows names only:
/// values may be secrets, and nothing that formats a START for a log may
/// show them.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Env(BTreeMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Env {
    /// The merge, lowest precedence first: the image's `env:`, the run's
    /// `env`, then the run's secrets. A run's secret and its plain variable
    /// of the same name is a mistake, and refused, rather than one silently
    /// hiding the other.
    pub fn merge(
        image: &BTreeMap<String, String>,
        run: &BTreeMap<String, String>,
        secrets: Vec<(String, String)>,
    ) -> Result<Env, String> {
        let mut vars = image.clone();
        vars.extend(run.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, value) in secrets {
            if run.contains_key(&name) {
                return Err(format!(
                    "{name} is set both as a variable and from a secret; keep one"
                ));
            }
            vars.insert(name, value);
        }
        check_env(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(Env(vars))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_posix_and_reserved_ones_are_refused() {
        for ok in ["A", "_x", "PATH", "a1_B2"] {
            assert!(check_var(ok, "v").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "A=B",
            "é",
            &"A".repeat(MAX_NAME + 1),
        ] {
            let e = check_var(bad, "v").unwrap_err();
            assert!(e.contains("not a valid"), "{bad}: {e}");
        }
        for reserved in ["BENTO_X", "BENTO_", "PYTHONDONTWRITEBYTECODE"] {
            let e = check_var(reserved, "v").unwrap_err();
            assert!(e.contains("reserved"), "{reserved}: {e}");
        }
    }

    #[test]
    fn errors_name_the_variable_never_the_value() {
        let e = check_var("TOKEN", "hunter2\0").unwrap_err();
        assert!(e.contains("TOKEN") && !e.contains("hunter2"), "{e}");
        let e = check_var("TOKEN", &"s".repeat(MAX_VALUE + 1)).unwrap_err();
        assert!(e.contains("TOKEN") && !e.contains("sss"), "{e}");
    }

    #[test]
    fn the_run_wins_over_the_image_and_secrets_may_not_shadow_the_run() {
        let image = map(&[("A", "image"), ("B", "image")]);
        let run = map(&[("B", "run")]);
        let env = Env::merge(&image, &run, vec![("C".into(), "secret".into())]).unwrap();
        assert_eq!(env.0, map(&[("A", "image"), ("B", "run"), ("C", "secret")]));
        // A secret over an image variable is the run's choice, and wins.
        let env = Env::merge(&image, &run, vec![("A".into(), "s".into())]).unwrap();
        assert_eq!(env.0["A"], "s");
        let e = Env::merge(&image, &run, vec![("B".into(), "s".into())]).unwrap_err();
        assert!(e.contains("both"), "{e}");
    }

    #[test]
    fn count_and_size_are_bounded_and_debug_shows_names_only() {
        let many: BTreeMap<String, String> = (0..=MAX_VARS)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert!(Env::merge(&many, &BTreeMap::new(), vec![])
            .unwrap_err()
            .contains("most is"));
        let big: BTreeMap<String, String> = (0..5)
            .map(|i| (format!("V{i}"), "x".repeat(MAX_VALUE)))
            .collect();
        assert!(Env::merge(&big, &BTreeMap::new(), vec![])
            .unwrap_err()
            .contains("bytes"));
        let env = Env::merge(&map(&[("K", "topsecret")]), &BTreeMap::new(), vec![]).unwrap();
        let shown = format!("{env:?}");
        assert!(
            shown.contains('K') && !shown.contains("topsecret"),
            "{shown}"
        );
    }
}
