//! Secrets: named values kept in the data dir, one file each under
//! `secrets/` (directory 0700, files 0600: only the controller's user reads
//! them), handed to a session's function as environment variables
//! (`bento run --secret NAME[=VAR]`, `docs/env.md`).
//!
//! Nothing ever shows a value: the API lists names and times, never
//! returns a value, and errors name the secret. A session's record keeps
//! the names it asked for, so a fork resolves them again rather than the
//! store's database holding copies.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::env::MAX_VALUE;
use crate::wire::api::SecretInfo;

/// Secrets one tenant keeps: a bound on its directory, so listing it
/// stays cheap.
pub const MAX_SECRETS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{0:?} is not a valid secret name: 1-64 letters, digits, '_', '-' or '.', \
         starting with a letter or '_'"
    )]
    BadName(String),
    #[error("the secret {0} is {1} bytes; the most is {MAX_VALUE}")]
    TooLarge(String, usize),
    #[error("the secret {0} contains a NUL byte, which no environment variable can hold")]
    Nul(String),
    #[error("no secret named {0} (bento secrets ls lists them; bento secrets set {0} adds it)")]
    Unknown(String),
    #[error("this tenant holds {MAX_SECRETS} secrets already; remove some first")]
    Full,
    #[error("secret store: {0}")]
    Io(#[from] std::io::Error),
}

/// A secret's name: what `--secret NAME` and the API use. Also the file's
/// name, so nothing that could climb out of the directory passes.
pub fn valid_secret_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    /// The store in `DATA_DIR/secrets`; the directory is made by the first
    /// [`set`](Self::set).
    pub fn new(data_dir: &Path) -> SecretStore {
        SecretStore {
            dir: data_dir.join("secrets"),
        }
    }

    /// The store of one tenant: the default tenant's secrets are in
    /// `secrets/` itself (where they were before tenants), another's in
    /// `secrets/+NAME/`, which no secret name can be (names start with a
    /// letter or `_`; tenant names are checked too). A name that is no
    /// tenant's (none is made so) gets `secrets/+/`, which no tenant has:
    /// never the default tenant's secrets.
    pub fn tenant(&self, tenant: &str) -> SecretStore {
        let dir = if tenant == crate::config::DEFAULT_TENANT {
            self.dir.clone()
        } else if crate::config::valid_tenant(tenant) {
            self.dir.join(format!("+{tenant}"))
        } else {
            self.dir.join("+")
        };
        SecretStore { dir }
    }

    /// Makes the directory, and makes sure only its owner can enter it,
    /// whatever the umask made (or someone did since).
    pub fn ensure_private(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        set_mode(&self.dir, 0o700)
    }

    fn path(&self, name: &str) -> Result<PathBuf, SecretError> {
        if !valid_secret_name(name) {
            return Err(SecretError::BadName(name.chars().take(64).collect()));
        }
        Ok(self.dir.join(name))
    }

    /// Stores (or replaces) a secret. Written to a private temporary file
    /// and renamed, so a reader sees the old value or the new, whole.
    pub fn set(&self, name: &str, value: &str) -> Result<bool, SecretError> {
        let path = self.path(name)?;
        if value.len() > MAX_VALUE {
            return Err(SecretError::TooLarge(name.into(), value.len()));
        }
        if value.contains('\0') {
            return Err(SecretError::Nul(name.into()));
        }
        self.ensure_private()?;
        let existed = path.exists();
        if !existed && self.list()?.len() >= MAX_SECRETS {
            return Err(SecretError::Full);
        }
        // Created 0600 (never readable by others, whatever the umask) and
        // renamed into place.
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let written =
            write_private(&tmp, value.as_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(!existed)
    }

    /// A secret's value, for a session's START only.
    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        let path = self.path(name)?;
        match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| SecretError::Io(std::io::Error::other("not UTF-8"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SecretError::Unknown(name.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a secret; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, SecretError> {
        match std::fs::remove_file(self.path(name)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names and when each was last set, by name.
    pub fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Temporary files of a write in progress, or anything else a
            // person put there.
            if !valid_secret_name(&name) {
                continue;
            }
            let updated_at = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            out.push(SecretInfo { name, updated_at });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_list_remove_and_the_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(dir.path());
        assert!(store.set("db_pass", "s3cret").unwrap());
        assert!(
            !store.set("db_pass", "other").unwrap(),
            "a replace is not new"
        );
        assert_eq!(store.get("db_pass").unwrap(), "other");
        let names: Vec<String> = store.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["db_pass"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("secrets")), 0o700);
            assert_eq!(mode(&dir.path().join("secrets/db_pass")), 0o600);
        }
        assert!(store.remove("db_pass").unwrap());
        assert!(!store.remove("db_pass").unwrap());
        assert!(matches!(store.get("db_pass"), Err(SecretError::Unknown(_))));
    }

    #[test]
    fn each_tenant_has_its_own_store_and_no_name_reaches_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(dir.path());
        store.tenant("default").set("k", "default's").unwrap();
        store.tenant("acme").set("k", "acme's").unwrap();
        assert_eq!(store.tenant("acme").get("k").unwrap(), "acme's");
        assert_eq!(store.get("k").unwrap(), "default's");
        for nobody in ["", "Acme", "../x", "+acme"] {
            assert!(
                matches!(store.tenant(nobody).get("k"), Err(SecretError::Unknown(_))),
                "{nobody:?}"
            );
        }
    }

    #[test]
    fn names_cannot_leave_the_directory_and_values_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(dir.path());
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(65)] {
            assert!(
                matches!(store.set(bad, "v"), Err(SecretError::BadName(_))),
                "{bad}"
            );
        }
        let e = store.set("k", "a\0b").unwrap_err().to_string();
        assert!(e.contains('k') && !e.contains("a\0b"), "{e}");
        let e = store.set("k", &"v".repeat(MAX_VALUE + 1)).unwrap_err();
        assert!(matches!(e, SecretError::TooLarge(..)));
    }
}
