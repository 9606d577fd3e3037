//! The RAM namespace, kept in copy-on-write chunks, and the [`Piece`]s of it (or of any shared
//! buffer) that reads hand to the writer thread.

use std::ops::Range;
use std::sync::Arc;

/// The RAM namespace, in chunks shared with the writer threads: a read hands the writer
/// references to the chunks it covers (no copy); a write to a chunk a read still holds copies
/// that chunk first (copy-on-write), so every read sees the data as of its command.
#[derive(Debug)]
pub(super) struct Namespace {
    chunks: Vec<Arc<Vec<u8>>>,
    len: usize,
}

/// Namespace chunk size.
const NS_CHUNK: usize = 1 << 20;

impl Namespace {
    pub(super) fn new(len: usize) -> Self {
        let chunks = (0..len.div_ceil(NS_CHUNK))
            .map(|i| Arc::new(vec![0u8; (len - i * NS_CHUNK).min(NS_CHUNK)]))
            .collect();
        Self { chunks, len }
    }

    /// The pieces covering `offset..offset + len` (within the namespace), split at chunks.
    pub(super) fn pieces(&self, offset: usize, len: usize) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let (i, within) = (at / NS_CHUNK, at % NS_CHUNK);
            let n = (end - at).min(NS_CHUNK - within);
            out.push(Piece {
                data: Arc::clone(&self.chunks[i]),
                range: within..within + n,
            });
            at += n;
        }
        out
    }

    pub(super) fn write(&mut self, offset: usize, data: &[u8]) {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let (i, within) = (at / NS_CHUNK, at % NS_CHUNK);
            let n = rest.len().min(NS_CHUNK - within);
            Arc::make_mut(&mut self.chunks[i])[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            at += n;
        }
    }

    pub(super) fn copy(&self, offset: usize, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.len);
        let start = offset.min(end);
        let mut v = Vec::with_capacity(end - start);
        for p in self.pieces(start, end - start) {
            v.extend_from_slice(&p.data[p.range]);
        }
        v
    }
}

/// Bytes of a shared buffer (a namespace chunk, or an Identify page).
#[derive(Clone, Debug)]
pub(super) struct Piece {
    pub(super) data: Arc<Vec<u8>>,
    pub(super) range: Range<usize>,
}
