//! Submitted functions, kept under `DATA_DIR/functions/` so they survive a
//! restart: `ID.py` holds the code and `ID.json` what is known about it.
//!
//! A name points at the newest function submitted with it, so submitting
//! `--name echo` again updates what `bento run echo` runs; older versions stay
//! reachable by id.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::session::record::now_secs;
use crate::wire::api::FunctionInfo;

pub struct FunctionStore {
    dir: PathBuf,
    /// Per tenant: a tenant's names and ids are its own.
    inner: Mutex<HashMap<String, Inner>>,
}

#[derive(Default)]
struct Inner {
    /// id → (function, submission time in microseconds).
    by_id: HashMap<String, (FunctionInfo, u64)>,
    /// name → id of the newest function with that name.
    names: HashMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    info: FunctionInfo,
    /// Orders submissions within one second, so "newest" is well defined.
    created_us: u64,
    /// Records from before tenants belong to the default one.
    #[serde(default = "default_tenant")]
    tenant: String,
}

fn default_tenant() -> String {
    crate::config::DEFAULT_TENANT.to_string()
}

impl Inner {
    fn insert(&mut self, r: Record) {
        if let Some(name) = &r.info.name {
            let newer = match self.names.get(name).and_then(|id| self.by_id.get(id)) {
                Some((_, cur)) => r.created_us >= *cur,
                None => true,
            };
            if newer {
                self.names.insert(name.clone(), r.info.id.clone());
            }
        }
        self.by_id.insert(r.info.id.clone(), (r.info, r.created_us));
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl FunctionStore {
    /// Opens the store, loading every function recorded in it. Records that
    /// do not parse are skipped with a warning rather than stopping the server.
    pub fn open(data_dir: &Path) -> io::Result<FunctionStore> {
        let dir = data_dir.join("functions");
        std::fs::create_dir_all(&dir)?;
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) if code_path(&dir, &r.info.id).exists() => records.push(r),
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "function record without code; skipped")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "bad function record; skipped")
                }
            }
        }
        records.sort_by_key(|r| r.created_us);
        let mut inner: HashMap<String, Inner> = HashMap::new();
        for r in records {
            inner.entry(r.tenant.clone()).or_default().insert(r);
        }
        Ok(FunctionStore {
            dir,
            inner: Mutex::new(inner),
        })
    }

    /// Stores a function. The code is written before the record, and each
    /// through a rename, so a crash never leaves a record without code.
    pub async fn submit(
        &self,
        code: &str,
        name: Option<String>,
        image: String,
        filename: String,
        tenant: &str,
    ) -> io::Result<FunctionInfo> {
        let id = format!("fn-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let info = FunctionInfo {
            id: id.clone(),
            name,
            image,
            size: code.len() as u64,
            created_at: now_secs(),
            filename,
        };
        write_atomic(&code_path(&self.dir, &id), code.as_bytes()).await?;
        let record = Record {
            info: info.clone(),
            created_us: now_us(),
            tenant: tenant.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&record)?;
        write_atomic(&self.dir.join(format!("{id}.json")), &bytes).await?;
        self.lock()
            .entry(tenant.to_string())
            .or_default()
            .insert(record);
        Ok(info)
    }

    /// Finds a function by id, or by name (the newest with that name).
    /// Another tenant's functions are not there.
    pub fn resolve(&self, tenant: &str, id_or_name: &str) -> Option<FunctionInfo> {
        let all = self.lock();
        let inner = all.get(tenant)?;
        let id = inner
            .names
            .get(id_or_name)
            .map(String::as_str)
            .unwrap_or(id_or_name);
        // An exact id wins over a name.
        inner
            .by_id
            .get(id_or_name)
            .or_else(|| inner.by_id.get(id))
            .map(|(f, _)| f.clone())
    }

    /// Deletes a function, found as [`FunctionStore::resolve`] finds it;
    /// `None` if there is none. Sessions already started keep running:
    /// their code is in their container, and resuming them after a restart
    /// does not read it. A name passes to the newest function left with
    /// it, which is also what reopening the store would find.
    ///
    /// It leaves the maps first, so that a session created meanwhile gets
    /// a clean "unknown function"; then the record goes before the code, so
    /// a crash in between leaves only code, which [`FunctionStore::open`]
    /// ignores.
    pub async fn remove(&self, tenant: &str, id_or_name: &str) -> io::Result<Option<FunctionInfo>> {
        let Some(info) = self.resolve(tenant, id_or_name) else {
            return Ok(None);
        };
        {
            let mut all = self.lock();
            let Some(inner) = all.get_mut(tenant) else {
                return Ok(None);
            };
            if inner.by_id.remove(&info.id).is_none() {
                return Ok(None); // removed by a concurrent call
            }
            if let Some(name) = &info.name {
                let newest = inner
                    .by_id
                    .values()
                    .filter(|(f, _)| f.name.as_ref() == Some(name))
                    .max_by_key(|(_, us)| *us)
                    .map(|(f, _)| f.id.clone());
                match newest {
                    Some(id) => inner.names.insert(name.clone(), id),
                    None => inner.names.remove(name),
                };
            }
        }
        remove_file_if_exists(&self.dir.join(format!("{}.json", info.id))).await?;
        remove_file_if_exists(&code_path(&self.dir, &info.id)).await?;
        Ok(Some(info))
    }

    pub async fn code(&self, id: &str) -> io::Result<String> {
        tokio::fs::read_to_string(code_path(&self.dir, id)).await
    }

    /// A tenant's functions, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<FunctionInfo> {
        let tenants = self.lock();
        let Some(inner) = tenants.get(tenant) else {
            return Vec::new();
        };
        let mut all: Vec<&(FunctionInfo, u64)> = inner.by_id.values().collect();
        all.sort_by_key(|(_, us)| *us);
        all.into_iter().map(|(f, _)| f.clone()).collect()
    }

    /// How many functions a tenant keeps, and their code's total size.
    pub fn usage(&self, tenant: &str) -> (u64, u64) {
        self.lock().get(tenant).map_or((0, 0), |inner| {
            let n = inner.by_id.len() as u64;
            (n, inner.by_id.values().map(|(f, _)| f.size).sum())
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Inner>> {
        // A panic while holding this lock cannot leave the maps half-updated
        // (every update is a single insert), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn code_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.py"))
}

async fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn functions_survive_reopen_and_names_follow_the_newest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let a = store
            .submit(
                "print(1)",
                Some("f".into()),
                "python".into(),
                "f.py".into(),
                "default",
            )
            .await;
        let b = store
            .submit(
                "print(2)",
                Some("f".into()),
                "python".into(),
                "two.py".into(),
                "default",
            )
            .await;
        let (a, b) = (
            a.unwrap_or_else(|e| panic!("{e}")),
            b.unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(
            store.resolve("default", "f").map(|f| f.id),
            Some(b.id.clone())
        );
        assert_eq!(
            store.resolve("default", &a.id).map(|f| f.id),
            Some(a.id.clone())
        );
        assert!(store.resolve("default", "nope").is_none());

        let reopened = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.list("default").len(), 2);
        assert_eq!(
            reopened.resolve("default", "f").map(|f| f.id),
            Some(b.id.clone())
        );
        assert_eq!(reopened.code(&a.id).await.ok().as_deref(), Some("print(1)"));
        assert_eq!(
            reopened
                .resolve("default", "f")
                .map(|f| f.filename)
                .as_deref(),
            Some("two.py")
        );
    }

    #[tokio::test]
    async fn records_from_before_file_names_run_as_function_py() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let fns = dir.path().join("functions");
        std::fs::create_dir_all(&fns).unwrap_or_else(|e| panic!("{e}"));
        let old = r#"{"info": {"id": "fn-old", "name": "old", "image": "python",
            "size": 4, "created_at": 1}, "created_us": 1}"#;
        std::fs::write(fns.join("fn-old.json"), old).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(fns.join("fn-old.py"), "pass").unwrap_or_else(|e| panic!("{e}"));
        let store = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let f = store.resolve("default", "old").map(|f| f.filename);
        assert_eq!(f.as_deref(), Some("function.py"));
    }

    #[tokio::test]
    async fn removing_passes_the_name_to_the_newest_left_and_lasts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut ids = Vec::new();
        for code in ["print(1)", "print(2)"] {
            let f = store
                .submit(
                    code,
                    Some("f".into()),
                    "python".into(),
                    "f.py".into(),
                    "default",
                )
                .await;
            ids.push(f.unwrap_or_else(|e| panic!("{e}")).id);
        }
        // By name: the newest goes, and the name falls back to the older one.
        let gone = store
            .remove("default", "f")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone.map(|f| f.id), Some(ids[1].clone()));
        assert_eq!(
            store.resolve("default", "f").map(|f| f.id),
            Some(ids[0].clone())
        );
        assert!(store.resolve("default", &ids[1]).is_none());
        let again = store
            .remove("default", &ids[1])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(again.is_none(), "a second removal finds nothing");

        let reopened = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.list("default").len(), 1);
        assert_eq!(
            reopened.resolve("default", "f").map(|f| f.id),
            Some(ids[0].clone())
        );
        let last = reopened
            .remove("default", &ids[0])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(last.is_some() && reopened.resolve("default", "f").is_none());
        let left = std::fs::read_dir(dir.path().join("functions"))
            .map(|d| d.count())
            .unwrap_or(usize::MAX);
        assert_eq!(left, 0, "no files are left behind");
    }

    #[tokio::test]
    async fn each_tenant_has_its_own_names_and_sees_no_other_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FunctionStore::open(dir.path()).expect("open");
        let a = store
            .submit("1", Some("f".into()), "python".into(), "f.py".into(), "a")
            .await
            .expect("a");
        let b = store
            .submit("22", Some("f".into()), "python".into(), "f.py".into(), "b")
            .await
            .expect("b");
        assert_eq!(store.resolve("a", "f").map(|f| f.id), Some(a.id.clone()));
        assert_eq!(store.resolve("b", "f").map(|f| f.id), Some(b.id.clone()));
        assert!(store.resolve("b", &a.id).is_none());
        assert!(store.remove("b", &a.id).await.expect("remove").is_none());
        assert_eq!(store.usage("b"), (1, 2));
        let reopened = FunctionStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.list("a").len(), 1);
        assert!(reopened.resolve("a", &b.id).is_none());
    }

    #[tokio::test]
    async fn garbage_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("functions")).expect("functions dir");
        std::fs::write(dir.path().join("functions/x.json"), b"{not json").expect("a bad file");
        let store = FunctionStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.list("default").is_empty());
    }
}
