//! `bento::wire::driver::Decoder` over the container's stdout, which is
//! untrusted and arrives in chunks of any size.
//!
//! Input layout: `[k][k chunk sizes][stream…]`. The stream is fed in chunks
//! of the given sizes (cycled; 0 feeds an empty slice), draining frames after
//! every feed, exactly as `session::io` does. Checked:
//! - no panic, no allocation past libFuzzer's `-malloc_limit_mb`;
//! - every payload is at most `MAX_PAYLOAD`, no frame has a controller →
//!   container kind, and every frame is the bytes it was cut from (kind,
//!   length, payload at the right offset);
//! - the outcome (frames, then error or clean end) does not depend on how the
//!   stream was split: it equals feeding the whole stream at once;
//! - after an error nothing more is fed (the caller's contract).
#![no_main]

use bento::wire::driver::{
    Decoder, Frame, FrameError, FLAG_END, HEADER_LEN, MAX_PAYLOAD,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum End {
    /// `finish()` was Ok: the stream ended on a frame boundary.
    Clean,
    /// `finish()` reported a partial frame left over.
    Truncated,
    /// `next_frame()` rejected the stream.
    Error(FrameError),
}

fn decode(stream: &[u8], sizes: &[usize]) -> (Vec<Frame>, End) {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.feed(Bytes::copy_from_slice(chunk));
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, End::Error(e)),
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    let end = match d.finish() {
        Ok(()) => End::Clean,
        Err(FrameError::Truncated) => End::Truncated,
        Err(e) => panic!("finish() returned {e:?}, not Truncated"),
    };
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let mut sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();
    if sizes.iter().all(|&s| s == 0) {
        // No progress possible: feed everything at once.
        sizes = vec![stream.len().max(1)];
    }

    let (frames, end) = decode(stream, &sizes);

    // Every frame is exactly the bytes it came from.
    let mut off = 0;
    for f in &frames {
        assert!(f.payload.len() <= MAX_PAYLOAD, "payload over MAX_PAYLOAD");
        // Controller → container kinds (16 and up) never come back out.
        assert!(f.kind.is_from_driver(), "decoder accepted kind {}", f.kind);
        let h = &stream[off..off + HEADER_LEN];
        assert_eq!(f.kind as u8, h[0]);
        assert_eq!(f.end, h[1] & FLAG_END != 0);
        assert_eq!(&h[2..4], &[0, 0]);
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        assert_eq!(f.payload.len(), len);
        off += HEADER_LEN;
        assert_eq!(&f.payload[..], &stream[off..off + len]);
        off += len;
    }
    match &end {
        End::Clean => assert_eq!(off, stream.len(), "clean end with bytes left over"),
        End::Truncated => assert!(off < stream.len()),
        End::Error(_) => assert!(stream.len() - off >= HEADER_LEN),
    }

    // Splitting does not change the outcome.
    let whole = decode(stream, &[stream.len().max(1)]);
    assert_eq!(whole.0, frames, "frames depend on chunking");
    assert_eq!(whole.1, end, "outcome depends on chunking");
});
