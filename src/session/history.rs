//! The history of reaped sessions: one row per session in `bento.db`'s
//! `history` table, kept after its output is gone (`GET /v1/history`,
//! `bento ls -a`). Never the token: a reaped session is found by its short
//! id, or by its token through a hash of it (xxh3-128: a 256-bit random
//! token cannot be got back from 128 bits of hash, and the hash opens
//! nothing, since a reaped session has nothing left to attach to).
//!
//! Retention (`history_ttl`, `history_max`) is applied at every insert and
//! listing, oldest (by reap time) first; what it drops is counted in
//! `bento_history_expired_total`.

use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

use super::store::{Db, DbError};
use crate::metrics;
use crate::wire::api::HistoryRecord;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS history (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    token_hash    TEXT NOT NULL,
    function      TEXT NOT NULL,
    function_name TEXT,
    created_at    INTEGER NOT NULL,
    reaped_at     INTEGER NOT NULL,
    record        TEXT NOT NULL,
    tenant        TEXT NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS history_reaped ON history (reaped_at);
CREATE INDEX IF NOT EXISTS history_token ON history (token_hash);";

/// Adds the columns later versions need to a table an earlier one made.
pub(super) fn migrate(conn: &Connection) -> Result<(), DbError> {
    let has_tenant: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('history') WHERE name = 'tenant'",
        [],
        |r| r.get(0),
    )?;
    if !has_tenant {
        conn.execute_batch(
            "ALTER TABLE history ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'",
        )?;
    }
    Ok(())
}

/// How long and how many records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub ttl: Duration,
    pub max: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            ttl: Duration::from_secs(7 * 24 * 3600),
            max: 10_000,
        }
    }
}

/// What a listing asks for. Times are seconds since the epoch and bound
/// the session's creation.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// A function's id or name.
    pub function: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// The page size (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Only this tenant's records; `None`: every tenant's.
    pub tenant: Option<String>,
    pub cursor: Option<Cursor>,
}

pub const MAX_PAGE: usize = 500;

/// Where the next page starts: below the last record of this one in the
/// order of the listing, which is the order of reaping, newest first (the
/// table's own sequence: exact where times in seconds tie, and unchanged
/// by records added meanwhile, which come before the first page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl Cursor {
    pub fn encode(&self) -> String {
        format!("r{}", self.0)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let n: i64 = s.strip_prefix('r')?.parse().ok()?;
        // Only what `encode` writes: no sign, no leading zero.
        (n > 0 && Cursor(n).encode() == s).then_some(Cursor(n))
    }
}

/// The hash a reaped session's token is found by.
pub fn token_hash(token: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(token.as_bytes()))
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Keeps the record of a session being reaped, then applies retention.
    pub fn insert_history(
        &self,
        token: &str,
        tenant: &str,
        r: &HistoryRecord,
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(r).unwrap_or_default();
        let conn = self.conn();
        conn.execute(
            "INSERT OR REPLACE INTO history
                 (id, token_hash, function, function_name, created_at, reaped_at, record, tenant)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.id,
                token_hash(token),
                r.function,
                r.function_name,
                int(r.created_at),
                int(r.reaped_at),
                json,
                tenant
            ],
        )?;
        prune(&conn, self.retention(), crate::session::record::now_secs())?;
        Ok(())
    }

    /// A page of records, the last reaped first, and the cursor of the
    /// next page.
    pub fn history(&self, q: &Query) -> Result<(Vec<HistoryRecord>, Option<Cursor>), DbError> {
        let conn = self.conn();
        prune(&conn, self.retention(), crate::session::record::now_secs())?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut stmt = conn.prepare(
            "SELECT seq, record FROM history
             WHERE (?1 IS NULL OR function = ?1 OR function_name = ?1)
               AND (?2 IS NULL OR created_at >= ?2)
               AND (?3 IS NULL OR created_at <= ?3)
               AND (?4 IS NULL OR seq < ?4)
               AND (?6 IS NULL OR tenant = ?6)
             ORDER BY seq DESC
             LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                q.function,
                q.since.map(int),
                q.until.map(int),
                q.cursor.map(|c| c.0),
                (limit + 1) as i64,
                q.tenant
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        // A record that no longer decodes (written by a later version) is
        // left out rather than failing the whole page.
        let mut out: Vec<(i64, HistoryRecord)> = rows
            .filter_map(|r| r.ok())
            .filter_map(|(seq, s)| Some((seq, serde_json::from_str(&s).ok()?)))
            .collect();
        let mut next = None;
        if out.len() > limit {
            out.truncate(limit);
            next = out.last().map(|(seq, _)| Cursor(*seq));
        }
        Ok((out.into_iter().map(|(_, r)| r).collect(), next))
    }

    /// The record of a reaped session of `tenant`, by its short id or its
    /// token.
    pub fn history_one(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<Option<HistoryRecord>, DbError> {
        let conn = self.conn();
        let record: Option<String> = conn
            .query_row(
                "SELECT record FROM history WHERE (id = ?1 OR token_hash = ?2) AND tenant = ?3",
                params![reference, token_hash(reference), tenant],
                |r| r.get(0),
            )
            .optional()?;
        Ok(record.and_then(|s| serde_json::from_str(&s).ok()))
    }
}

/// Drops records older than the ttl, then the oldest (first reaped)
/// beyond the maximum.
/// Returns how many went (and counts them in the metrics).
pub(super) fn prune(conn: &Connection, keep: Retention, now: u64) -> Result<u64, DbError> {
    let oldest = int(now.saturating_sub(keep.ttl.as_secs()));
    let mut gone = conn.execute("DELETE FROM history WHERE reaped_at < ?1", params![oldest])?;
    gone += conn.execute(
        "DELETE FROM history WHERE id IN (
             SELECT id FROM history ORDER BY seq DESC LIMIT -1 OFFSET ?1)",
        params![int(keep.max)],
    )?;
    metrics::add(&metrics::METRICS.history_expired, gone as u64);
    Ok(gone as u64)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
