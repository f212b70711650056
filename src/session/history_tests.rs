use super::*;
use crate::wire::api::HistoryState;

fn record(id: &str, function: &str, created_at: u64, reaped_at: u64) -> HistoryRecord {
    HistoryRecord {
        id: id.into(),
        state: HistoryState::Reaped,
        function: function.into(),
        function_name: Some(format!("{function}-name")),
        image: "python".into(),
        kind: "persistent".into(),
        limits: None,
        created_at,
        started_at: created_at,
        ended_at: Some(created_at + 1),
        reaped_at,
        reaped_why: "test".into(),
        exit: None,
        bytes_in: 0,
        messages_in: 0,
        bytes_out: 0,
        messages_out: 0,
        reconnects: 0,
        usage: None,
    }
}

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, db)
}

fn ids(v: &[HistoryRecord]) -> Vec<&str> {
    v.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn cursors_round_trip_and_refuse_garbage() {
    let c = Cursor(42);
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    for bad in ["", "42", "r", "r-1", "r0", "rx", "r1.5"] {
        assert_eq!(Cursor::decode(bad), None, "{bad:?}");
    }
}

#[test]
fn pages_walk_the_last_reaped_first_without_gaps_or_repeats() {
    let (_dir, db) = db();
    let now = crate::session::record::now_secs();
    // Two share a creation second: the id orders them.
    for (id, at) in [
        ("s-a", 10),
        ("s-b", 20),
        ("s-c", 20),
        ("s-d", 30),
        ("s-e", 40),
    ] {
        let r = record(
            id,
            if at == 20 { "fn-2" } else { "fn-1" },
            now - 100 + at,
            now,
        );
        db.insert_history(&"t".repeat(64).replace('t', &id[2..]), "default", &r)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut q = Query {
        limit: 2,
        ..Query::default()
    };
    let mut seen = Vec::new();
    loop {
        let (page, next) = db.history(&q).unwrap_or_else(|e| panic!("{e}"));
        seen.extend(page.iter().map(|r| r.id.clone()));
        match next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["s-e", "s-d", "s-c", "s-b", "s-a"]);
    let by_fn = Query {
        function: Some("fn-2-name".into()),
        limit: 10,
        ..Query::default()
    };
    let (page, next) = db.history(&by_fn).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ids(&page), next), (vec!["s-c", "s-b"], None));
    let recent = Query {
        since: Some(now - 100 + 30),
        limit: 10,
        ..Query::default()
    };
    let (page, _) = db.history(&recent).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&page), ["s-e", "s-d"]);
}

#[test]
fn found_by_id_or_token_never_stored_as_is() {
    let (dir, db) = db();
    let token = "ab".repeat(32);
    let now = crate::session::record::now_secs();
    db.insert_history(&token, "default", &record("s-x", "fn", now, now))
        .unwrap_or_else(|e| panic!("{e}"));
    let by_token = db
        .history_one("default", &token)
        .unwrap_or_else(|e| panic!("{e}"));
    let by_id = db
        .history_one("default", "s-x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_token.map(|r| r.id), Some("s-x".to_string()));
    assert!(by_id.is_some());
    assert_eq!(db.history_one("default", "s-y").ok().flatten(), None);
    drop(db);
    let bytes = std::fs::read(dir.path().join("bento.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("bento.db-wal")).unwrap_or_default();
    for file in [bytes, wal] {
        assert!(!file.windows(64).any(|w| w == token.as_bytes()));
    }
}

#[test]
fn retention_drops_the_oldest_beyond_max_and_those_past_ttl() {
    let (_dir, db) = db();
    let now = crate::session::record::now_secs();
    db.set_retention(Retention {
        ttl: Duration::from_secs(3600),
        max: 3,
    });
    let before = metrics::METRICS
        .history_expired
        .load(std::sync::atomic::Ordering::Relaxed);
    // One past the ttl: dropped at its own insert.
    db.insert_history(
        &"1".repeat(64),
        "default",
        &record("s-old", "f", now - 7200, now - 7200),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5u64 {
        let r = record(&format!("s-{i}"), "f", now - 50 + i, now - 50 + i);
        db.insert_history(&i.to_string().repeat(64), "default", &r)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (page, _) = db
        .history(&Query {
            limit: 10,
            ..Query::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&page), ["s-4", "s-3", "s-2"]);
    let after = metrics::METRICS
        .history_expired
        .load(std::sync::atomic::Ordering::Relaxed);
    // Other tests may expire records meanwhile: at least these three.
    assert!(after - before >= 3, "expired {}", after - before);
}
