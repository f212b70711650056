//! Who this controller is, and that it is the only one on its data dir.
//!
//! Several controllers may share one engine and one label prefix (a
//! `bento serve` on the host beside the compose stack, with the defaults,
//! is the common case). Each has a persistent identity, kept in its data
//! dir and carried in a label on every container it creates, so that its
//! reconcile removes only its own orphans and never another controller's
//! running functions. Two controllers on one data dir would both adopt the
//! same sessions and fight over their containers, so the data dir is
//! locked for as long as the controller runs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The file in the data dir holding the identity.
const ID_FILE: &str = "controller-id";
/// The file in the data dir that is locked while a controller runs.
const LOCK_FILE: &str = "lock";

/// The identity in `data_dir`, made on the first start: `c-` and 16 hex
/// digits (64 random bits; an identity is a name, not a secret).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid(id) {
                return Ok(id.to_string());
            }
            anyhow::bail!(
                "{} does not hold a controller identity (c- and 16 hex digits); \
                 it is made on the first start: remove the file only if no \
                 containers of this data dir's sessions are left",
                path.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("c-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
            // Written whole, then renamed, so a crash never leaves half an id.
            // Synced before the rename and the directory after it, so a
            // power loss leaves either no identity or this one.
            let tmp = data_dir.join(format!("{ID_FILE}.tmp"));
            let written = File::create(&tmp)
                .and_then(|mut f| {
                    f.write_all(format!("{id}\n").as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| File::open(data_dir)?.sync_all());
            written.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            tracing::info!(controller = %id, "new controller identity");
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn valid(id: &str) -> bool {
    id.len() == 18 && id.starts_with("c-") && id[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The data dir's lock, held until dropped (the kernel lets go of it when
/// the process dies, SIGKILL included).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data dir's lock, or says which process holds it.
pub fn lock(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory involved.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another controller".to_string()
        } else {
            format!("another controller (pid {holder})")
        };
        anyhow::bail!(
            "{who} is already using the data dir {}: two controllers on one data \
             dir would fight over its sessions; give this one another --data-dir",
            data_dir.display()
        );
    }
    // Who holds it, for the message above; the lock itself is the flock.
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the pid into the data dir's lock file");
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = load_or_create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(valid(&first), "{first}");
        let again = load_or_create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again);
        std::fs::write(dir.path().join(ID_FILE), "garbage").expect("a bad identity file");
        assert!(load_or_create(dir.path()).is_err());
    }

    #[test]
    fn a_second_lock_on_one_data_dir_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let held = lock(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let second = lock(dir.path());
        let message = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("already using the data dir"), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }
}
