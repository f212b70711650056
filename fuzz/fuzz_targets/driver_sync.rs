//! `Decoder::seek_sync`: after a controller restart, `reconcile::resume`
//! joins the container's stdout at an arbitrary point (possibly inside a
//! frame) and scans for the SYNC frame that carries its nonce
//! (`docs/driver.md`, "RESUME and SYNC"). Everything before it is untrusted
//! noise.
//!
//! Input layout: `[k][k chunk sizes][16-byte nonce][stream…]`. The stream is
//! fed in chunks (as in `driver_frame`), calling `seek_sync` after each feed
//! until it answers, then the rest goes to a fresh decoder as
//! `reconcile::resume` and `session::io` do. Checked:
//! - no panic, no runaway allocation;
//! - the answer is the one a naive search gives: the first occurrence of
//!   the 24-byte SYNC header + nonce whose 40-byte payload is complete, for
//!   any chunking; no answer when there is none;
//! - the bytes after SYNC (`into_remaining` plus what was not fed yet) are
//!   exactly the stream after that frame;
//! - without an answer, the decoder keeps less than one SYNC frame of noise.
#![no_main]

use bento::wire::driver::{Decoder, Kind, Sync, HEADER_LEN, NONCE_LEN};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// SYNC's payload: nonce, then offset, inputs_received, inputs_consumed (u64 BE).
const SYNC_PAYLOAD: usize = NONCE_LEN + 24;

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// What a plain search over the whole stream finds.
fn reference<'a>(stream: &'a [u8], nonce: &[u8; NONCE_LEN]) -> Option<(Sync, &'a [u8])> {
    let mut pattern = vec![Kind::Sync as u8, 0, 0, 0];
    pattern.extend_from_slice(&(SYNC_PAYLOAD as u32).to_be_bytes());
    pattern.extend_from_slice(nonce);
    let at = stream.windows(pattern.len()).position(|w| w == pattern)?;
    let body = stream.get(at + HEADER_LEN + NONCE_LEN..at + HEADER_LEN + SYNC_PAYLOAD)?;
    let sync = Sync {
        offset: be64(&body[0..]),
        inputs_received: be64(&body[8..]),
        inputs_consumed: be64(&body[16..]),
    };
    Some((sync, &stream[at + HEADER_LEN + SYNC_PAYLOAD..]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, rest) = rest.split_at(k);
    if rest.len() < NONCE_LEN {
        return;
    }
    let (nonce, stream) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
    let mut sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![stream.len().max(1)];
    }

    let want = reference(stream, &nonce);

    let mut d = Decoder::new();
    let mut rest = stream;
    let mut i = 0;
    let found = loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.feed(Bytes::copy_from_slice(chunk));
        if let Some(sync) = d.seek_sync(&nonce) {
            break Some(sync);
        }
        if rest.is_empty() {
            break None;
        }
    };
    let remaining = d.into_remaining();

    match (found, want) {
        (Some(got), Some((sync, after))) => {
            assert_eq!(
                got, sync,
                "seek_sync found another SYNC than a plain search"
            );
            let mut tail = remaining.to_vec();
            tail.extend_from_slice(rest);
            assert_eq!(&tail[..], after, "bytes after SYNC lost or duplicated");
            // What follows is decoded from scratch (session::io); it must not panic.
            let mut next = Decoder::new();
            next.feed(remaining.clone());
            next.feed(Bytes::copy_from_slice(rest));
            while let Ok(Some(_)) = next.next_frame() {}
        }
        (None, None) => {
            assert!(
                remaining.len() < HEADER_LEN + SYNC_PAYLOAD,
                "{} bytes of noise kept",
                remaining.len()
            );
        }
        (got, want) => panic!("seek_sync: {got:?}, plain search: {:?}", want.map(|w| w.0)),
    }
});
