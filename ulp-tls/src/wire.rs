//! The transport as OpenSSL sees it, with a watcher on the record boundaries of what arrives.
//!
//! OpenSSL reads the ciphertext through [`Wire::read`] straight into its own record buffer; the
//! watcher only looks at the 5-byte record headers as they pass (it skips record bodies by
//! length), so that an end of stream or a failure can be described in words: whether the peer's
//! first bytes were a TLS record at all, whether the stream ended inside a record, and whether a
//! header announced a record longer than TLS allows.

use std::io::{self, Read, Write};

/// TLS 1.3's largest ciphertext record body: 2^14 plaintext + 256 (RFC 8446 §5.2).
pub(crate) const MAX_RECORD_BODY: usize = (1 << 14) + 256;

/// How many of the peer's first bytes are kept to describe a peer that does not speak TLS.
pub(crate) const HEAD_KEPT: usize = 8;

/// A transport `S` with the record watcher.
#[derive(Debug)]
pub(crate) struct Wire<S> {
    pub(crate) stream: S,
    pub(crate) seen: Seen,
}

/// What the watcher has seen of the peer's byte stream.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Bytes received in all.
    pub(crate) received: u64,
    /// The first bytes received (up to [`HEAD_KEPT`]).
    pub(crate) head: [u8; HEAD_KEPT],
    /// How many of `head` are filled.
    pub(crate) head_len: usize,
    /// A read returned end of stream.
    pub(crate) eof: bool,
    /// The header of the record being received, as far as it has arrived.
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current record still to come.
    body_left: usize,
    /// A header announced a body longer than [`MAX_RECORD_BODY`] (its length).
    pub(crate) oversize: Option<usize>,
}

impl Seen {
    /// The peer's first bytes, as far as they arrived.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// The stream stopped inside a record (a partial header or body).
    pub(crate) fn mid_record(&self) -> bool {
        self.header_len > 0 || self.body_left > 0
    }

    /// Whether the first bytes are (the start of) a TLS record header: a content type of TLS
    /// (change_cipher_spec 20 to heartbeat 24) and a legacy version 3.x.
    pub(crate) fn head_is_tls(&self) -> bool {
        let head = self.head();
        let type_ok = head.first().is_none_or(|t| (20..=24).contains(t));
        let major_ok = head.get(1).is_none_or(|&v| v == 3);
        type_ok && major_ok
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        self.received += bytes.len() as u64;
        let keep = (HEAD_KEPT - self.head_len).min(bytes.len());
        self.head[self.head_len..self.head_len + keep].copy_from_slice(&bytes[..keep]);
        self.head_len += keep;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len());
                self.body_left -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let length = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if length > MAX_RECORD_BODY && self.oversize.is_none() {
                    self.oversize = Some(length);
                }
                self.body_left = length;
            }
        }
    }
}

impl<S: Read> Read for Wire<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.seen.eof = true;
        }
        self.seen.observe(&buf[..n]);
        Ok(n)
    }
}

impl<S: Write> Write for Wire<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The same watcher over tokio's traits (feature `tokio`): the bytes a read put in the
/// buffer are observed as they pass.
#[cfg(feature = "tokio")]
impl<S: ::tokio::io::AsyncRead + Unpin> ::tokio::io::AsyncRead for Wire<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ::tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let poll = std::pin::Pin::new(&mut this.stream).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if new.is_empty() && wanted {
                this.seen.eof = true;
            }
            this.seen.observe(new);
        }
        poll
    }
}

#[cfg(feature = "tokio")]
impl<S: ::tokio::io::AsyncWrite + Unpin> ::tokio::io::AsyncWrite for Wire<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cut_anywhere_are_tracked() {
        let mut seen = Seen::default();
        // Two records: 3-byte body, then a header announcing 10 bytes of which 4 arrive.
        let bytes = [23, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 10, 9, 9, 9, 9];
        for chunk in bytes.chunks(2) {
            seen.observe(chunk);
        }
        assert!(seen.head_is_tls());
        assert!(seen.mid_record());
        assert_eq!(seen.received, bytes.len() as u64);
        assert_eq!(seen.oversize, None);
        seen.observe(&[0; 6]);
        assert!(!seen.mid_record());
    }

    #[test]
    fn oversize_and_plaintext_heads_are_seen() {
        let mut seen = Seen::default();
        seen.observe(&[23, 3, 3, 0x41, 0x01]);
        assert_eq!(seen.oversize, Some(0x4101));
        let mut plain = Seen::default();
        plain.observe(&[1, 0, 128, 0]); // an NVMe/TCP ICResp's common header
        assert!(!plain.head_is_tls());
        assert_eq!(plain.head(), &[1, 0, 128, 0]);
    }
}
