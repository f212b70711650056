//! Unit tests of the output log and its spool.
use super::spool::RECORD_HEADER;
use super::*;
use crate::wire::api::ExitReason;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

fn out(s: &str) -> Entry {
    Entry::Output {
        stream: Stream::Data,
        end: true,
        bytes: Bytes::copy_from_slice(s.as_bytes()),
    }
}

fn log(window: usize) -> (tempfile::TempDir, OutputLog) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("s.spool");
    (dir, OutputLog::new(path, window))
}

#[test]
fn sequences_start_at_one_and_ack_trims() {
    let (_d, mut l) = log(1 << 20);
    assert_eq!(l.append(out("a"), 9).expect("append"), 1);
    assert_eq!(l.append(out("bb"), 19).expect("append"), 2);
    assert_eq!(l.pending_bytes(), 3);
    assert_eq!(l.stream_offset(), 19);
    l.ack(1).expect("ack");
    assert_eq!(l.get(1).expect("get"), None);
    assert_eq!(l.get(2).expect("get"), Some(out("bb")));
    assert_eq!(l.pending_messages(), 1);
    // An ack beyond the end is clamped, an old ack is a no-op.
    l.ack(99).expect("ack");
    l.ack(1).expect("ack");
    assert_eq!(l.acked(), 2);
    assert_eq!(l.pending_bytes(), 0);
}

#[test]
fn entries_beyond_the_memory_window_are_read_back_from_the_spool() {
    let (_d, mut l) = log(10);
    let msgs: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
    for (i, m) in msgs.iter().enumerate() {
        l.append(out(m), i as u64).expect("append");
    }
    l.append(Entry::Exit(ExitReason::Exited { code: 3 }.into()), 50)
        .expect("append");
    assert!(l.spooled_bytes() > 0, "small window must read from disk");
    // Only the newest entry (the exit) stays, whatever the window.
    assert!(l.mem_bytes <= 64 + ENTRY_OVERHEAD);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(l.get(i as u64 + 1).expect("get"), Some(out(m)));
    }
    assert!(matches!(l.get(51).expect("get"), Some(Entry::Exit(_))));
    l.ack(20).expect("ack");
    assert_eq!(l.get(21).expect("get"), Some(out(&msgs[20])));
    l.ack(51).expect("ack");
    assert_eq!(l.pending_bytes(), 0);
    // A small spool keeps its acked records, a checkpoint after them.
    let recovered = OutputLog::recover(l.path(), 10, 0);
    let recovered = recovered.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((recovered.acked(), recovered.pending_bytes()), (51, 0));
}

#[test]
fn with_no_window_everything_is_read_from_disk() {
    let (_d, mut l) = log(1 << 20);
    l.append(out("kept"), 1).expect("append");
    l.set_window(0).expect("set_window");
    assert_eq!(l.mem_bytes, 0);
    l.append(out("on disk"), 2).expect("append");
    assert_eq!(l.mem_bytes, 0);
    assert_eq!(l.get(1).expect("get"), Some(out("kept")));
    assert_eq!(l.get(2).expect("get"), Some(out("on disk")));
    assert_eq!(l.spooled_bytes(), 11);
}

#[test]
fn a_recovered_log_has_what_was_not_acknowledged() {
    let (d, mut l) = log(1 << 20);
    for i in 0..10 {
        l.append(out(&format!("m{i}")), (i + 1) * 100)
            .expect("append");
    }
    l.ack(4).expect("ack");
    let path = d.path().join("s.spool");
    // As after a crash: the store knew of acks up to 3 only.
    drop(l);
    let mut r = OutputLog::recover(path.clone(), 1 << 20, 3).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.last_seq(), 10);
    assert_eq!(r.acked(), 3);
    assert_eq!(r.stream_offset(), 1000);
    assert_eq!(r.get(4).expect("get"), Some(out("m3")));
    assert_eq!(r.get(10).expect("get"), Some(out("m9")));
    // Appending goes on with the next seq.
    assert_eq!(r.append(out("m10"), 1100).expect("append"), 11);
}

#[test]
fn a_torn_record_is_dropped_and_checkpoints_keep_the_numbering() {
    let (d, mut l) = log(1 << 20);
    l.append(out("one"), 10).expect("append");
    l.append(out("two"), 20).expect("append");
    l.ack(2).expect("ack"); // a checkpoint after the acked records
    l.append(out("three"), 30).expect("append");
    let path = d.path().join("s.spool");
    let end = l.spool.end();
    drop(l);
    // A crash in the middle of writing a fourth record.
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all_at(&[0u8; 7], end).expect("write half a record");
    drop(f);
    let mut r = OutputLog::recover(path, 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.acked(), 2);
    assert_eq!(r.last_seq(), 3);
    assert_eq!(r.stream_offset(), 30);
    assert_eq!(r.get(3).expect("get"), Some(out("three")));
    assert_eq!(r.append(out("four"), 40).expect("append"), 4);
    assert_eq!(r.get(4).expect("get"), Some(out("four")));
}

#[test]
fn a_large_acked_spool_starts_over_and_repeated_acks_write_nothing() {
    let (_d, mut l) = log(0);
    let mib = Entry::Output {
        stream: Stream::Data,
        end: true,
        bytes: Bytes::from(vec![7u8; 1 << 20]),
    };
    l.append(out("small"), 1).expect("append");
    l.ack(1).expect("ack");
    let after_first = l.spool.end();
    assert!(after_first > RECORD_HEADER as u64, "small: appended");
    l.ack(1).expect("ack");
    assert_eq!(
        l.spool.end(),
        after_first,
        "nothing new acked, nothing written"
    );
    for i in 0..9u64 {
        l.append(mib.clone(), 2 + i).expect("append");
    }
    assert!(l.spool.end() >= TRUNCATE_AT);
    l.ack(10).expect("ack");
    assert_eq!(
        l.spool.end(),
        RECORD_HEADER as u64,
        "large: one checkpoint left"
    );
    assert_eq!((l.acked(), l.pending_bytes()), (10, 0));
}

#[test]
fn a_missing_spool_recovers_empty() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let r = OutputLog::recover(dir.path().join("none.spool"), 10, 5);
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.acked(), r.last_seq()), (5, 5));
}

/// An entry that costs 1 MiB, its overhead included.
fn mib(byte: u8) -> Entry {
    Entry::Output {
        stream: Stream::Data,
        end: true,
        bytes: Bytes::from(vec![byte; (1 << 20) - ENTRY_OVERHEAD]),
    }
}

#[test]
fn output_acknowledged_while_in_memory_is_never_spooled() {
    let (_d, mut l) = log(1 << 20);
    for i in 1..=10u64 {
        assert_eq!(
            l.append_replayable(out(&format!("m{i}")), i * 10)
                .expect("append_replayable"),
            i
        );
    }
    assert_eq!(l.spool.end(), 0, "nothing written yet");
    assert_eq!(l.durable_offset(), 0, "the driver must keep all of it");
    assert_eq!(l.get(4).expect("get"), Some(out("m4")));
    l.ack(6).expect("ack");
    // One checkpoint, no payload: seqs 1-6 and offset 60 are durable.
    assert_eq!(l.spool.end(), RECORD_HEADER as u64);
    assert_eq!(l.durable_offset(), 60);
    assert_eq!(l.pending_messages(), 4);
    assert_eq!(l.pending_bytes(), 2 + 2 + 2 + 3);
    assert_eq!(l.get(7).expect("get"), Some(out("m7")));
    let r = OutputLog::recover(l.path(), 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.acked(), r.last_seq(), r.stream_offset()), (6, 6, 60));
}

#[test]
fn after_a_crash_unspooled_output_comes_again_under_the_same_seqs() {
    let (_d, mut l) = log(1 << 20);
    for i in 1..=5u64 {
        l.append_replayable(out(&format!("m{i}")), i * 100)
            .expect("append_replayable");
    }
    l.ack(2).expect("ack");
    let path = l.path();
    drop(l); // a crash: 3-5 were in memory only
    let mut r = OutputLog::recover(path, 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
    // The driver resumes from here and sends frames 3-5 again.
    assert_eq!(r.stream_offset(), 200);
    assert_eq!(r.durable_offset(), 200);
    for i in 3..=5u64 {
        let seq = r
            .append_replayable(out(&format!("m{i}")), i * 100)
            .expect("append_replayable");
        assert_eq!(seq, i);
    }
    assert_eq!(r.get(3).expect("get"), Some(out("m3")));
}

#[test]
fn unspooled_output_is_bounded_by_the_window_and_max_unspooled() {
    // A window larger than the bound: the bound spools the oldest.
    let (_d, mut l) = log(64 << 20);
    for i in 0..6u64 {
        l.append_replayable(mib(i as u8), (i + 1) << 20)
            .expect("append_replayable");
    }
    assert!(l.unspooled_bytes() <= MAX_UNSPOOLED);
    assert_eq!(l.durable_offset(), 2 << 20, "the two oldest are spooled");
    assert_eq!(l.get(1).expect("get"), Some(mib(0)));
    // A small window: what leaves memory is spooled first, in order.
    let (_d2, mut s) = log(1 << 20);
    for i in 0..3u64 {
        s.append_replayable(mib(i as u8), (i + 1) << 20)
            .expect("append_replayable");
    }
    assert_eq!(s.durable_offset(), 2 << 20);
    assert_eq!(s.unspooled_bytes(), 1 << 20);
    for i in 0..3u64 {
        assert_eq!(s.get(i + 1).expect("get"), Some(mib(i as u8)));
    }
}

#[test]
fn write_through_entries_and_flushes_keep_the_spool_in_seq_order() {
    let (_d, mut l) = log(1 << 20);
    l.append_replayable(out("a"), 10)
        .expect("append_replayable");
    l.append_replayable(out("b"), 20)
        .expect("append_replayable");
    // Raw stderr is not retransmitted: written at once, after a and b.
    assert_eq!(l.append(out("raw"), 20).expect("append"), 3);
    assert_eq!(l.durable_offset(), 20);
    l.append_replayable(out("c"), 30)
        .expect("append_replayable");
    l.set_window(0).expect("set_window"); // the client left: everything goes to disk
    assert_eq!((l.unspooled_bytes(), l.durable_offset()), (0, 30));
    l.append_replayable(out("d"), 40)
        .expect("append_replayable");
    assert_eq!(l.durable_offset(), 40, "with no window, written through");
    let mut r = OutputLog::recover(l.path(), 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<_> = (1..=5).map(|s| r.get(s).expect("get")).collect();
    let want = ["a", "b", "raw", "c", "d"].map(|s| Some(out(s)));
    assert_eq!(got, want);
}

#[test]
fn the_exit_is_written_through_after_what_is_unspooled() {
    let (_d, mut l) = log(1 << 20);
    l.append_replayable(out("last words"), 10)
        .expect("append_replayable");
    let exit = Entry::Exit(ExitReason::Exited { code: 0 }.into());
    assert_eq!(l.append_replayable(exit, 10).expect("append_replayable"), 2);
    assert_eq!(l.unspooled_bytes(), 0);
    let mut r = OutputLog::recover(l.path(), 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.has_exit());
    assert_eq!(r.get(1).expect("get"), Some(out("last words")));
}

#[test]
fn empty_entries_cost_their_overhead_everywhere_a_size_is_bounded() {
    let (_d, mut l) = log(10 * ENTRY_OVERHEAD);
    for i in 0..100u64 {
        l.append_replayable(out(""), (i + 1) * 8)
            .expect("append_replayable");
    }
    // The window holds ten of them; the rest went to the spool.
    assert!(l.mem_bytes <= 10 * ENTRY_OVERHEAD);
    assert!(l.unspooled_bytes() <= 10 * ENTRY_OVERHEAD);
    assert_eq!(l.durable_offset(), 90 * 8);
    assert_eq!(l.pending_bytes(), 0, "no payload");
    assert_eq!(l.pending_cost(), 100 * ENTRY_OVERHEAD as u64);
    l.ack(40).expect("ack");
    assert_eq!(l.pending_cost(), 60 * ENTRY_OVERHEAD as u64);
}
