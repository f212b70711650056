//! Tenants and their API keys, in `DATA_DIR/tenants.db`.
//!
//! A key reads `bento_ID_SECRET`: the id is public (it names the key in
//! `bento keys ls`, the audit log and revocation) and the secret is 256
//! random bits from the OS. Only a SHA-256 of the secret is stored. A slow
//! password hash would buy nothing here: the secret is random, not chosen by
//! a person, so there is no dictionary to slow down, and every request
//! pays the hash.
//!
//! The store is read into memory at start and written through, so checking
//! a key costs one hash and a map lookup. The controller is its only
//! writer while it runs: offline changes (`bento keys create --data-dir`)
//! are refused while a controller holds the data dir's lock.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Role, DEFAULT_TENANT};
use crate::config::valid_tenant;
use crate::controller::api::auth::constant_time_eq;
use crate::session::record::now_secs;
pub use crate::wire::api::{KeyInfo, KeyRole, NewKey, TenantInfo};

/// The prefix every key starts with, so a leaked one is recognisable (and
/// secret scanners can be taught it).
pub const KEY_PREFIX: &str = "bento_";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not a tenant name: 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit")]
    BadName(String),
    #[error("tenant {0:?} exists already")]
    TenantExists(String),
    #[error("no tenant {0:?} (bento tenants add {0})")]
    NoTenant(String),
    #[error("no key {0:?}")]
    NoKey(String),
    #[error("the tenants database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Who a key is, once checked.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    pub revoked: CancellationToken,
}

struct Entry {
    info: KeyInfo,
    role: Role,
    hash: [u8; 32],
    /// Cancelled at revocation; connections opened with the key hold a
    /// clone.
    revoked: CancellationToken,
}

#[derive(Default)]
struct Cache {
    tenants: Vec<TenantInfo>,
    keys: HashMap<String, Entry>,
}

pub struct KeyStore {
    conn: Mutex<Connection>,
    cache: Mutex<Cache>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL REFERENCES tenants(name),
    role       TEXT NOT NULL,
    hash       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);";

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// 64 hex digits from two v4 UUIDs (each from the OS's random source; 244
/// random bits in all).
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A key's public id: `k-` and 12 hex digits.
pub fn valid_key_id(id: &str) -> bool {
    id.len() == 14
        && id.starts_with("k-")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits `bento_ID_SECRET`.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.starts_with("k-") && !secret.is_empty()).then_some((id, secret))
}

impl KeyStore {
    pub fn open(data_dir: &Path) -> Result<KeyStore, KeyError> {
        let conn = Connection::open(data_dir.join("tenants.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?1, ?2)",
            params![DEFAULT_TENANT, now_secs() as i64],
        )?;
        let store = KeyStore {
            conn: Mutex::new(conn),
            cache: Mutex::new(Cache::default()),
        };
        store.reload()?;
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every use is one statement; a poisoned connection is still whole.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reload(&self) -> Result<(), KeyError> {
        let conn = self.conn();
        let mut tenants = Vec::new();
        let mut st =
            conn.prepare("SELECT name, created_at FROM tenants ORDER BY created_at, name")?;
        for row in st.query_map([], |r| {
            Ok(TenantInfo {
                name: r.get(0)?,
                created_at: r.get::<_, i64>(1)?.max(0) as u64,
            })
        })? {
            tenants.push(row?);
        }
        let mut keys = HashMap::new();
        let mut st =
            conn.prepare("SELECT id, tenant, role, hash, created_at, revoked_at FROM api_keys")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        for row in rows {
            let (id, tenant, role_s, h, created, revoked_at) = row?;
            // A row this version cannot read opens nothing.
            let (Some(role), Ok(hash)) = (Role::parse(&role_s), <[u8; 32]>::try_from(h)) else {
                tracing::warn!(key = %id, "unreadable key row; it opens nothing");
                continue;
            };
            let revoked = CancellationToken::new();
            if revoked_at.is_some() {
                revoked.cancel();
            }
            let info = KeyInfo {
                id: id.clone(),
                tenant,
                role: role.wire(),
                created_at: created.max(0) as u64,
                revoked_at: revoked_at.map(|t| t.max(0) as u64),
            };
            keys.insert(
                id,
                Entry {
                    info,
                    role,
                    hash,
                    revoked,
                },
            );
        }
        *self.cache() = Cache { tenants, keys };
        Ok(())
    }

    pub fn tenants(&self) -> Vec<TenantInfo> {
        self.cache().tenants.clone()
    }

    pub fn tenant_exists(&self, name: &str) -> bool {
        self.cache().tenants.iter().any(|t| t.name == name)
    }

    pub fn add_tenant(&self, name: &str) -> Result<TenantInfo, KeyError> {
        if !valid_tenant(name) {
            return Err(KeyError::BadName(name.to_string()));
        }
        let info = TenantInfo {
            name: name.to_string(),
            created_at: now_secs(),
        };
        let added = self.conn().execute(
            "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?1, ?2)",
            params![info.name, info.created_at as i64],
        )?;
        if added == 0 {
            return Err(KeyError::TenantExists(name.to_string()));
        }
        self.cache().tenants.push(info.clone());
        Ok(info)
    }

    /// Makes a key. The secret is in the answer and nowhere else.
    pub fn create_key(&self, tenant: &str, role: Role) -> Result<NewKey, KeyError> {
        if !self.tenant_exists(tenant) {
            return Err(KeyError::NoTenant(tenant.to_string()));
        }
        let id = format!("k-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let secret = random_hex();
        let h = hash(&secret);
        let info = KeyInfo {
            id: id.clone(),
            tenant: tenant.to_string(),
            role: role.wire(),
            created_at: now_secs(),
            revoked_at: None,
        };
        self.conn().execute(
            "INSERT INTO api_keys (id, tenant, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                info.tenant,
                role.as_str(),
                h.to_vec(),
                info.created_at as i64
            ],
        )?;
        self.cache().keys.insert(
            id.clone(),
            Entry {
                info: info.clone(),
                role,
                hash: h,
                revoked: CancellationToken::new(),
            },
        );
        Ok(NewKey {
            key: format!("{KEY_PREFIX}{id}_{secret}"),
            info,
        })
    }

    /// Keys, oldest first; of one tenant, or of all.
    pub fn keys(&self, tenant: Option<&str>) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = self
            .cache()
            .keys
            .values()
            .filter(|e| tenant.is_none_or(|t| e.info.tenant == t))
            .map(|e| e.info.clone())
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    pub fn key(&self, id: &str) -> Option<KeyInfo> {
        self.cache().keys.get(id).map(|e| e.info.clone())
    }

    /// Revokes a key: its next request is refused, and every connection
    /// opened with it is closed now. Revoking twice keeps the first time.
    pub fn revoke(&self, id: &str) -> Result<KeyInfo, KeyError> {
        let now = now_secs();
        let changed = self.conn().execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now as i64],
        )?;
        let exists: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM api_keys WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(KeyError::NoKey(id.to_string()));
        }
        let mut cache = self.cache();
        let Some(e) = cache.keys.get_mut(id) else {
            return Err(KeyError::NoKey(id.to_string()));
        };
        if changed > 0 {
            e.info.revoked_at = Some(now);
        }
        e.revoked.cancel();
        Ok(e.info.clone())
    }

    /// Whether any key was ever made (revoked ones count): then every
    /// request needs a key.
    pub fn has_keys(&self) -> bool {
        !self.cache().keys.is_empty()
    }

    /// Checks a key. `None` for anything that is not a live key of this
    /// store: unknown id, wrong secret, revoked, malformed.
    pub fn check(&self, key: &str) -> Option<KeyOwner> {
        let (id, secret) = split_key(key)?;
        let h = hash(secret);
        let cache = self.cache();
        let e = cache.keys.get(id)?;
        if !constant_time_eq(&h, &e.hash) || e.info.revoked_at.is_some() {
            return None;
        }
        Some(KeyOwner {
            id: e.info.id.clone(),
            tenant: e.info.tenant.clone(),
            role: e.role,
            revoked: e.revoked.clone(),
        })
    }

    /// Whether `key` has the shape of a store key whose id exists but is
    /// revoked, for a clearer refusal.
    pub fn is_revoked(&self, key: &str) -> bool {
        split_key(key)
            .and_then(|(id, _)| {
                self.cache()
                    .keys
                    .get(id)
                    .map(|e| e.info.revoked_at.is_some())
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = KeyStore::open(dir.path()).expect("open");
        (dir, s)
    }

    #[test]
    fn a_key_opens_its_tenant_until_revoked_and_only_its_hash_is_kept() {
        let (dir, s) = store();
        s.add_tenant("acme").expect("add");
        let k = s.create_key("acme", Role::Viewer).expect("key");
        assert!(k.key.starts_with("bento_k-"));
        let owner = s.check(&k.key).expect("opens");
        assert_eq!((owner.tenant.as_str(), owner.role), ("acme", Role::Viewer));
        // A wrong secret for the same id, and garbage, open nothing.
        let (id, _) = split_key(&k.key).expect("shape");
        assert!(s.check(&format!("bento_{id}_{}", "0".repeat(64))).is_none());
        assert!(s.check("bento_").is_none() && s.check("").is_none());
        // The secret is nowhere in the database file.
        drop(s);
        let (_, secret) = split_key(&k.key).expect("shape");
        let bytes = std::fs::read(dir.path().join("tenants.db")).expect("db");
        let wal = std::fs::read(dir.path().join("tenants.db-wal")).unwrap_or_default();
        for b in [bytes, wal] {
            assert!(!b.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
        // Reopened: the key still opens, and revocation sticks.
        let s = KeyStore::open(dir.path()).expect("reopen");
        let owner = s.check(&k.key).expect("opens after reopen");
        assert!(!owner.revoked.is_cancelled());
        let info = s.revoke(&owner.id).expect("revoke");
        assert!(info.revoked_at.is_some());
        assert!(owner.revoked.is_cancelled(), "open connections are told");
        assert!(s.check(&k.key).is_none());
        assert!(s.is_revoked(&k.key));
        let s = KeyStore::open(dir.path()).expect("reopen");
        assert!(s.check(&k.key).is_none());
        assert!(s.keys(None).iter().all(|k| k.revoked_at.is_some()));
    }

    #[test]
    fn tenants_are_made_once_and_keys_need_one() {
        let (_dir, s) = store();
        assert!(s.tenant_exists(DEFAULT_TENANT));
        assert!(matches!(
            s.add_tenant("Bad Name"),
            Err(KeyError::BadName(_))
        ));
        s.add_tenant("a").expect("add");
        assert!(matches!(s.add_tenant("a"), Err(KeyError::TenantExists(_))));
        assert!(matches!(
            s.create_key("nobody", Role::User),
            Err(KeyError::NoTenant(_))
        ));
        assert!(matches!(s.revoke("k-nothing"), Err(KeyError::NoKey(_))));
        let a = s.create_key("a", Role::User).expect("key");
        let d = s.create_key(DEFAULT_TENANT, Role::Admin).expect("key");
        assert_eq!(s.keys(Some("a")), vec![a.info.clone()]);
        assert_eq!(s.keys(None).len(), 2);
        assert_ne!(a.key, d.key);
    }
}
