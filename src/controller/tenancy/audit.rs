//! The audit log: one JSON object per line in `DATA_DIR/audit.log`, for
//! what an operator must be able to answer later (who made, killed or
//! closed a session, which key was used from a new address, who was refused
//! by a quota, which keys were made or revoked).
//!
//! A record names keys by their public id and sessions by their short id,
//! never a key, a token or a secret. Lines are appended under a lock and
//! never buffered in memory, so nothing waits in a queue to be lost; each
//! write is a few hundred bytes to the page cache. Past `audit_max_bytes`
//! the file is rotated: `audit.log` → `audit.log.1` → … → `audit.log.3`,
//! and the oldest is dropped.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Principal;

/// Old files kept after rotation.
const KEEP: usize = 3;
/// Addresses remembered per key for "first use from here"; past it the
/// oldest are forgotten (and may be reported again).
const ADDRESSES_PER_KEY: usize = 64;

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    SessionCreated,
    SessionForked,
    SessionKilled,
    SessionClosed,
    SessionExtended,
    KeyFromNewAddress,
    QuotaRefused,
    TenantAdded,
    KeyCreated,
    KeyRevoked,
}

#[derive(Serialize)]
struct Line<'a> {
    /// Milliseconds since the epoch.
    ts: u64,
    event: Event,
    tenant: &'a str,
    /// The key's public id, `api_key`, `token` or `none`.
    key: &'a str,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<IpAddr>,
    /// A session's short id, a key's id, a tenant's name, a quota's name.
    #[serde(skip_serializing_if = "str::is_empty")]
    object: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
}

struct Inner {
    file: Option<File>,
    size: u64,
    seen: HashMap<String, HashSet<IpAddr>>,
}

pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditLog {
    pub fn open(data_dir: &Path, max_bytes: u64) -> AuditLog {
        let path = data_dir.join("audit.log");
        let (file, size) = open_append(&path);
        AuditLog {
            path,
            max_bytes,
            inner: Mutex::new(Inner {
                file,
                size,
                seen: HashMap::new(),
            }),
        }
    }

    /// Records an event done by `who` on `object` (a short id or a name).
    pub fn record(&self, who: &Principal, event: Event, object: &str, detail: &str) {
        let line = Line {
            ts: now_ms(),
            event,
            tenant: &who.tenant,
            key: who.key_label(),
            role: who.role.as_str(),
            addr: who.addr,
            object,
            detail,
        };
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            return;
        };
        bytes.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.size + bytes.len() as u64 > self.max_bytes {
            self.rotate(&mut inner);
        }
        let Some(f) = inner.file.as_mut() else {
            return;
        };
        match f.write_all(&bytes) {
            Ok(()) => inner.size += bytes.len() as u64,
            // Logged once per failure, without the record's content.
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot write the audit log")
            }
        }
    }

    /// Records the first use of a key from an address (per controller run).
    pub fn key_used(&self, who: &Principal) {
        let Some(addr) = who.addr else { return };
        let label = who.key_label().to_string();
        if matches!(label.as_str(), "none" | "token") {
            return;
        }
        let new = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let seen = inner.seen.entry(label).or_default();
            if seen.len() >= ADDRESSES_PER_KEY {
                seen.clear();
            }
            seen.insert(addr)
        };
        if new {
            self.record(who, Event::KeyFromNewAddress, "", "");
        }
    }

    fn rotate(&self, inner: &mut Inner) {
        inner.file = None;
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(KEEP));
        for i in (1..KEEP).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        if let Err(e) = std::fs::rename(&self.path, name(1)) {
            tracing::warn!(error = %e, "cannot rotate the audit log");
        }
        let (file, size) = open_append(&self.path);
        inner.file = file;
        inner.size = size;
    }
}

fn open_append(path: &Path) -> (Option<File>, u64) {
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Some(f), size)
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot open the audit log; audit records are lost");
            (None, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tenancy::Credential;

    #[test]
    fn records_are_json_lines_and_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path(), 4096);
        let mut who = Principal::default_admin(Credential::Key("k-1".into()));
        for _ in 0..40 {
            log.record(&who, Event::SessionCreated, "s-1", "");
        }
        let text = std::fs::read_to_string(dir.path().join("audit.log")).expect("read");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["event"], "session_created");
        assert_eq!(first["key"], "k-1");
        assert_eq!(first["object"], "s-1");
        assert!(dir.path().join("audit.log.1").exists(), "rotated");
        assert!(
            std::fs::metadata(dir.path().join("audit.log"))
                .expect("meta")
                .len()
                <= 4096
        );
        // A new address once, then not again.
        who.addr = Some("10.0.0.1".parse().expect("ip"));
        log.key_used(&who);
        log.key_used(&who);
        let text = std::fs::read_to_string(dir.path().join("audit.log")).expect("read");
        assert_eq!(text.matches("key_from_new_address").count(), 1);
    }
}
