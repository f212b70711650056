//! The terminal end of an attach: stdin lines in, output frames out.

use super::render::Render;
use crate::wire::api::{OutputFrame, Stream};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Longest stdin line: one line is one input message.
pub(super) const MAX_LINE: usize = crate::client::MAX_INPUT_MESSAGE;

/// Reads one line, without its `\n` (and a `\r` before it). A last line
/// without a newline counts; `None` at end of input. Lines longer than
/// `max` are an error rather than unbounded memory.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(std::io::Error::other(format!(
                "an input line is longer than {max} bytes, the most one input message may hold"
            )));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

/// Whether a frame is followed by a newline on the terminal: the end of a
/// data message is, unless the user asked for the raw bytes.
pub(super) fn newline_after(f: &OutputFrame, raw: bool) -> bool {
    f.stream == Stream::Data && f.end && !raw
}

/// Writes output frames where they belong: data and stdout to `out`
/// (buffered by the caller), stderr to `err`; unless raw, with control
/// characters shown rather than obeyed (see `render`).
pub(super) struct Output<O, E> {
    out: O,
    err: E,
    raw: bool,
    render: Option<Render>,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Output<O, E> {
    pub(super) fn new(out: O, err: E, raw: bool) -> Self {
        Output {
            out,
            err,
            raw,
            render: (!raw).then(Render::default),
        }
    }

    /// Writes one chunk as it comes: a 100 MB message streams through
    /// rather than being assembled first.
    pub(super) async fn write(&mut self, f: &OutputFrame) -> std::io::Result<()> {
        let bytes = match &mut self.render {
            Some(r) => r.frame(f),
            None => f.bytes.clone(),
        };
        match f.stream {
            Stream::Data => {
                self.out.write_all(&bytes).await?;
                if newline_after(f, self.raw) {
                    self.out.write_all(b"\n").await?;
                }
            }
            Stream::Stdout => self.out.write_all(&bytes).await?,
            Stream::Stderr => {
                // Keep the order the function wrote in, as far as a
                // terminal showing both streams can tell.
                self.out.flush().await?;
                self.err.write_all(&bytes).await?;
                self.err.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes everything, including what the renderer holds back of an
    /// unfinished character (shown as bytes).
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(r) = &mut self.render {
            let (out, err) = r.finish();
            self.out.write_all(&out).await?;
            if !err.is_empty() {
                self.err.write_all(&err).await?;
                self.err.flush().await?;
            }
        }
        self.out.flush().await
    }

    #[cfg(test)]
    pub(super) fn into_parts(self) -> (O, E) {
        (self.out, self.err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            match read_line(&mut r, max).await {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn lines_lose_their_endings() {
        let got = lines(b"one\ntwo\r\n\nlast", 100).await;
        let want: Vec<Result<Vec<u8>, String>> = vec![
            Ok(b"one".to_vec()),
            Ok(b"two".to_vec()),
            Ok(vec![]),
            Ok(b"last".to_vec()),
        ];
        assert_eq!(got, want);
        assert!(lines(b"", 100).await.is_empty());
        // A lone \r without \n is content.
        assert_eq!(lines(b"a\rb\n", 100).await, vec![Ok(b"a\rb".to_vec())]);
    }

    #[tokio::test]
    async fn long_lines_are_refused() {
        let got = lines(b"12345678\n", 8).await;
        assert_eq!(got, vec![Ok(b"12345678".to_vec())]);
        let got = lines(b"123456789\n", 8).await;
        assert!(matches!(got.as_slice(), [Err(_)]));
    }

    fn frame(stream: Stream, end: bool, s: &'static str) -> OutputFrame {
        OutputFrame {
            seq: 1,
            stream,
            end,
            bytes: Bytes::from_static(s.as_bytes()),
        }
    }

    #[tokio::test]
    async fn data_messages_end_with_newline_unless_raw() -> std::io::Result<()> {
        let mut o = Output::new(Vec::new(), Vec::new(), false);
        o.write(&frame(Stream::Data, false, "hel")).await?;
        o.write(&frame(Stream::Data, true, "lo")).await?;
        o.write(&frame(Stream::Stdout, true, "printed")).await?;
        o.write(&frame(Stream::Stderr, true, "oops")).await?;
        let (out, err) = o.into_parts();
        assert_eq!(out, b"hello\nprinted");
        assert_eq!(err, b"oops");

        let mut o = Output::new(Vec::new(), Vec::new(), true);
        o.write(&frame(Stream::Data, true, "a")).await?;
        o.write(&frame(Stream::Data, true, "b")).await?;
        assert_eq!(o.into_parts().0, b"ab");
        Ok(())
    }

    #[tokio::test]
    async fn control_characters_are_shown_unless_raw() -> std::io::Result<()> {
        let hostile = "\x1b[31mred\x1b]0;title\x07";
        let mut o = Output::new(Vec::new(), Vec::new(), false);
        o.write(&frame(Stream::Data, true, hostile)).await?;
        o.write(&frame(Stream::Stdout, true, "\x1b[2J")).await?;
        o.write(&frame(Stream::Stderr, true, "\x1b]52;c;aGk=\x07"))
            .await?;
        o.flush().await?;
        let (out, err) = o.into_parts();
        let shown = concat!(r"\x1b[31mred\x1b]0;title\x07", "\n", r"\x1b[2J");
        assert_eq!(out, shown.as_bytes());
        assert_eq!(err, br"\x1b]52;c;aGk=\x07");

        let mut o = Output::new(Vec::new(), Vec::new(), true);
        o.write(&frame(Stream::Data, true, hostile)).await?;
        o.flush().await?;
        assert_eq!(o.into_parts().0, hostile.as_bytes());
        Ok(())
    }
}
