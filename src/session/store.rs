//! The controller's durable state: one SQLite database in the data dir
//! (`bento.db`) holding every live session, so a restarted controller finds
//! its sessions again. Output itself lives in each session's spool file.
//!
//! Writes are small and rare (a session's creation, its exit, its acks at
//! most once a second, its end), so they are made synchronously on the
//! calling task; SQLite in WAL mode takes well under a millisecond for each.
//! The schema is plain SQL so a shared database could later take its place
//! for several controllers.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

use super::record::SessionRecord;
use crate::wire::api::{ExitInfo, ExitReason, ForkState};

#[derive(Debug, thiserror::Error)]
#[error("state database: {0}")]
pub struct DbError(#[from] rusqlite::Error);

/// What is stored about a session: its record, and what has changed
/// durably since.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub record: SessionRecord,
    pub exit: Option<ExitInfo>,
    pub ended_at: Option<u64>,
    /// Output acknowledged by clients (may lag; the spool knows better).
    pub acked: u64,
    /// Why the controller was killing the function, if it was.
    pub kill_reason: Option<ExitReason>,
    /// End of input has been written to the function.
    pub input_closed: bool,
    /// No input seq above this has been written to the function (see
    /// `session::io::InputReservation`). `None` for sessions recorded
    /// before the bound was kept.
    pub input_reserved: Option<u64>,
    /// A fork's replay, as last recorded (`None` for other sessions).
    pub fork_state: Option<ForkState>,
}

impl SessionRow {
    /// A new session's row: nothing has happened to it yet.
    pub fn new(record: SessionRecord, input_reserved: Option<u64>) -> SessionRow {
        SessionRow {
            exit: None,
            ended_at: None,
            acked: 0,
            kill_reason: None,
            input_closed: false,
            input_reserved,
            fork_state: record.fork.as_ref().map(|_| ForkState::Replaying),
            record,
        }
    }
}

pub struct Db {
    conn: Mutex<Connection>,
    /// How long reaped sessions' records are kept (`session::history`).
    retention: Mutex<super::history::Retention>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    token         TEXT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    function      TEXT NOT NULL,
    function_name TEXT,
    image         TEXT NOT NULL,
    transient     INTEGER NOT NULL,
    container     TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    deadline      INTEGER,
    exit          TEXT,
    ended_at      INTEGER,
    acked         INTEGER NOT NULL DEFAULT 0,
    kill_reason   TEXT,
    input_closed  INTEGER NOT NULL DEFAULT 0,
    limits        TEXT,
    warm          INTEGER NOT NULL DEFAULT 0,
    input_reserved INTEGER,
    args          TEXT,
    forkable      INTEGER NOT NULL DEFAULT 0,
    fork          TEXT,
    fork_state    TEXT,
    env           TEXT,
    tenant        TEXT NOT NULL DEFAULT 'default',
    stop_grace_ms INTEGER
);";

/// Columns added after the first schema, for databases made before them.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("warm", "warm INTEGER NOT NULL DEFAULT 0"),
    ("input_reserved", "input_reserved INTEGER"),
    ("args", "args TEXT"),
    ("forkable", "forkable INTEGER NOT NULL DEFAULT 0"),
    ("fork", "fork TEXT"),
    ("fork_state", "fork_state TEXT"),
    ("env", "env TEXT"),
    ("tenant", "tenant TEXT NOT NULL DEFAULT 'default'"),
    ("stop_grace_ms", "stop_grace_ms INTEGER"),
];

/// SQLite integers are signed; counts past `i64::MAX` are stored as it.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

fn from_json<T: serde::de::DeserializeOwned>(s: Option<String>) -> Option<T> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl Db {
    pub fn open(data_dir: &Path) -> Result<Db, DbError> {
        let conn = Connection::open(data_dir.join("bento.db"))?;
        // WAL: a crash loses at most the last transactions, never the file;
        // NORMAL sync is durable across a process crash (the one we test).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        for (name, def) in ADDED_COLUMNS {
            let exists: bool = conn.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('sessions') WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {def}"))?;
            }
        }
        conn.execute_batch(super::history::SCHEMA)?;
        super::history::migrate(&conn)?;
        Ok(Db {
            conn: Mutex::new(conn),
            retention: Mutex::new(Default::default()),
        })
    }

    /// Sets the history's retention (the default: 7 days, 10,000 records).
    pub fn set_retention(&self, r: super::history::Retention) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    pub(super) fn retention(&self) -> super::history::Retention {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every use is one statement; a poisoned connection is still whole.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert_session(&self, r: &SessionRow) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO sessions (token, id, function, function_name, image, transient,
                 container, created_at, deadline, exit, ended_at, acked, kill_reason,
                 input_closed, limits, warm, input_reserved, args, forkable, fork, fork_state, env,
                 tenant, stop_grace_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            params![
                r.record.token,
                r.record.id,
                r.record.function,
                r.record.function_name,
                r.record.image,
                r.record.transient,
                r.record.container,
                r.record.created_at as i64,
                r.record.deadline.map(|d| d as i64),
                json(&r.exit),
                r.ended_at.map(|d| d as i64),
                r.acked as i64,
                json(&r.kill_reason),
                r.input_closed,
                json(&r.record.limits),
                r.record.warm,
                r.input_reserved.map(int),
                json(&Some(&r.record.args)),
                r.record.forkable,
                json(&r.record.fork),
                json(&r.fork_state),
                json(&Some(&r.record.env)),
                r.record.tenant,
                int(u64::try_from(r.record.stop_grace.as_millis()).unwrap_or(u64::MAX)),
            ],
        )?;
        Ok(())
    }

    pub fn set_acked(&self, token: &str, acked: u64) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET acked = max(acked, ?2) WHERE token = ?1",
            params![token, acked as i64],
        )?;
        Ok(())
    }

    pub fn set_exit(&self, token: &str, exit: &ExitInfo, ended_at: u64) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET exit = ?2, ended_at = ?3 WHERE token = ?1",
            params![token, json(&Some(exit)), ended_at as i64],
        )?;
        Ok(())
    }

    pub fn set_kill_reason(&self, token: &str, reason: &ExitReason) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET kill_reason = ?2 WHERE token = ?1",
            params![token, json(&Some(reason))],
        )?;
        Ok(())
    }

    /// Raises the bound on input seqs written (never lowers it).
    pub fn set_input_reserved(&self, token: &str, upto: u64) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET input_reserved = max(coalesce(input_reserved, 0), ?2)
             WHERE token = ?1",
            params![token, int(upto)],
        )?;
        Ok(())
    }

    /// Moves the session's deadline (`extend`), so that a restarted
    /// controller keeps to the new one.
    pub fn set_deadline(&self, token: &str, deadline: u64) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET deadline = ?2 WHERE token = ?1",
            params![token, int(deadline)],
        )?;
        Ok(())
    }

    pub fn set_fork_state(&self, token: &str, state: ForkState) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET fork_state = ?2 WHERE token = ?1",
            params![token, json(&Some(state))],
        )?;
        Ok(())
    }

    pub fn set_input_closed(&self, token: &str) -> Result<(), DbError> {
        self.conn().execute(
            "UPDATE sessions SET input_closed = 1 WHERE token = ?1",
            params![token],
        )?;
        Ok(())
    }

    pub fn delete_session(&self, token: &str) -> Result<(), DbError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE token = ?1", params![token])?;
        Ok(())
    }

    pub fn session(&self, token: &str) -> Result<Option<SessionRow>, DbError> {
        Ok(self
            .conn()
            .query_row(&format!("{SELECT} WHERE token = ?1"), params![token], row)
            .optional()?)
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY created_at"))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

const SELECT: &str = "SELECT token, id, function, function_name, image, transient, container,
    created_at, deadline, exit, ended_at, acked, kill_reason, input_closed, limits, warm,
    input_reserved, args, forkable, fork, fork_state, env, tenant, stop_grace_ms
    FROM sessions";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        record: SessionRecord {
            token: r.get(0)?,
            id: r.get(1)?,
            function: r.get(2)?,
            function_name: r.get(3)?,
            image: r.get(4)?,
            transient: r.get(5)?,
            container: r.get(6)?,
            created_at: r.get::<_, i64>(7)? as u64,
            deadline: r.get::<_, Option<i64>>(8)?.map(|d| d as u64),
            limits: from_json(r.get(14)?),
            warm: r.get(15)?,
            args: from_json(r.get(17)?).unwrap_or_default(),
            forkable: r.get(18)?,
            fork: from_json(r.get(19)?),
            env: from_json(r.get(21)?).unwrap_or_default(),
            tenant: r.get(22)?,
            // Rows from before it get the default of an image without one.
            stop_grace: r
                .get::<_, Option<i64>>(23)?
                .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64))
                .unwrap_or(crate::config::DEFAULT_STOP_GRACE),
        },
        exit: from_json(r.get(9)?),
        ended_at: r.get::<_, Option<i64>>(10)?.map(|d| d as u64),
        acked: r.get::<_, i64>(11)? as u64,
        kill_reason: from_json(r.get(12)?),
        input_closed: r.get(13)?,
        input_reserved: r.get::<_, Option<i64>>(16)?.map(|v| v.max(0) as u64),
        fork_state: from_json(r.get(20)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionRow {
        let record = SessionRecord {
            token: "t".repeat(64),
            id: "s-1".into(),
            function: "fn-1".into(),
            function_name: Some("f".into()),
            image: "python".into(),
            transient: true,
            container: "c1".into(),
            created_at: 10,
            deadline: Some(20),
            stop_grace: std::time::Duration::from_millis(2500),
            limits: None,
            warm: true,
            args: vec!["1".into(), "x y".into()],
            forkable: true,
            fork: Some(super::super::record::ForkOrigin {
                parent: "s-0".into(),
                at_input: 7,
            }),
            env: super::super::record::RunEnv {
                vars: [("A".to_string(), "1".to_string())].into(),
                secrets: vec![crate::wire::api::SecretUse {
                    name: "db".into(),
                    env: Some("DB_PASS".into()),
                }],
            },
            tenant: "default".into(),
        };
        SessionRow::new(record, Some(1024))
    }

    #[test]
    fn sessions_survive_reopening_with_their_updates() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let r = sample();
        let token = &r.record.token;
        let ok = |what: &str, result: Result<(), DbError>| {
            result.unwrap_or_else(|e| panic!("{what}: {e}"));
        };
        ok("insert", db.insert_session(&r));
        ok("ack", db.set_acked(token, 5));
        ok("ack", db.set_acked(token, 3)); // never goes back
        ok(
            "kill reason",
            db.set_kill_reason(token, &ExitReason::Timeout),
        );
        let exit: ExitInfo = ExitReason::Timeout.into();
        ok("exit", db.set_exit(token, &exit, 30));
        ok("bound", db.set_input_reserved(token, 4096));
        ok("bound", db.set_input_reserved(token, 2048)); // never goes back
        ok("fork", db.set_fork_state(token, ForkState::Diverged));
        ok("deadline", db.set_deadline(token, 90));
        drop(db);
        let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let back = db.session(token).unwrap_or_else(|e| panic!("read: {e}"));
        let want = SessionRow {
            acked: 5,
            kill_reason: Some(ExitReason::Timeout),
            exit: Some(exit),
            ended_at: Some(30),
            input_reserved: Some(4096),
            fork_state: Some(ForkState::Diverged),
            record: SessionRecord {
                deadline: Some(90),
                ..r.record.clone()
            },
            ..r.clone()
        };
        assert_eq!(back, Some(want));
        assert_eq!(db.sessions().map(|v| v.len()).ok(), Some(1));
        ok("delete", db.delete_session(token));
        assert_eq!(db.sessions().map(|v| v.len()).ok(), Some(0));
    }
}
