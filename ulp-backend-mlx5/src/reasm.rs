//! [`Reassembly`]: the TCP receive queue between the device and the receive engine.

use std::collections::BTreeMap;

use ulp_ddp_core::{Piece, Tag, TcpSeq};

use crate::driver::{Run, RxSegment};

#[derive(Clone, Debug)]
enum Held {
    /// Bytes left in a receive buffer.
    Bytes(Vec<u8>),
    /// Bytes the device placed into `tag`'s buffer at `offset`.
    Placed { tag: Tag, offset: u64, len: u32 },
}

impl Held {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Placed { len, .. } => u64::from(*len),
        }
    }
}

/// TCP reassembly of annotated segments: hands the receive engine the in-order stream, each
/// byte once, as [`Piece::Placed`] where the device placed it and [`Piece::Bytes`] elsewhere,
/// with the segment's digest verdict.
///
/// Like the kernel's out-of-order queue it keeps the first copy of every byte it receives:
/// retransmitted and duplicated bytes already held or delivered are trimmed.
#[derive(Clone, Debug)]
pub struct Reassembly {
    /// Sequence number of stream position 0.
    base: TcpSeq,
    /// Stream position of the next byte to deliver.
    next: u64,
    /// Out-of-order runs by stream position (disjoint, all beyond `next`).
    held: BTreeMap<u64, (Held, bool)>,
    held_bytes: u64,
}

impl Reassembly {
    /// A queue whose first byte has sequence number `initial`.
    pub fn new(initial: TcpSeq) -> Self {
        Self {
            base: initial,
            next: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
        }
    }

    /// Sequence number of the next byte the engine gets.
    pub fn next_seq(&self) -> TcpSeq {
        self.base.wrapping_add(self.next as u32)
    }

    /// Bytes waiting for a gap before them to fill.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Stream position of `seq`, relative to the next byte to deliver (serial arithmetic).
    fn position(&self, seq: TcpSeq) -> i64 {
        self.next as i64 + i64::from(self.next_seq().distance_to(seq))
    }

    /// Takes one segment (`payload` from `seq`, rebuilt by the driver as `segment`) and passes
    /// every byte that became in order to `deliver`.
    ///
    /// # Errors
    ///
    /// The first error `deliver` returns; the bytes after it stay undelivered.
    pub fn push<E>(
        &mut self,
        seq: TcpSeq,
        payload: &[u8],
        segment: &RxSegment,
        deliver: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.position(seq);
        let mut at = 0usize;
        for run in segment.runs() {
            let len = run.len() as usize;
            let run_start = start + at as i64;
            let bytes = payload.get(at..at + len).unwrap_or(&[]);
            at += len;
            // Clip what was already delivered.
            let skip = (self.next as i64 - run_start).clamp(0, len as i64) as usize;
            if skip == len {
                continue;
            }
            let s = (run_start + skip as i64) as u64;
            let n = len - skip;
            let held = match run {
                Run::Bytes { .. } => Held::Bytes(bytes.get(skip..).unwrap_or(&[]).to_vec()),
                Run::Placed { tag, offset, .. } => Held::Placed {
                    tag: *tag,
                    offset: u64::from(*offset) + skip as u64,
                    len: n as u32,
                },
            };
            if s == self.next {
                let piece = match &held {
                    Held::Bytes(b) => Piece::Bytes {
                        data: b,
                        digest_ok: segment.crc_ok(),
                    },
                    Held::Placed { tag, offset, len } => Piece::Placed {
                        tag: *tag,
                        offset: *offset,
                        len: *len,
                        digest_ok: segment.crc_ok(),
                    },
                };
                self.next += n as u64;
                deliver(piece)?;
                self.flush(deliver)?;
            } else {
                self.hold(s, held, segment.crc_ok());
            }
        }
        Ok(())
    }

    /// Stores the parts of `[start, start + len)` no held run covers yet.
    fn hold(&mut self, start: u64, held: Held, crc_ok: bool) {
        let end = start + held.len();
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for (&k, (h, _)) in self.held.range(..end).rev() {
            if k + h.len() <= start {
                break;
            }
            covered.push((k, k + h.len()));
        }
        covered.reverse();
        let mut cur = start;
        let mut gaps = Vec::new();
        for (s, e) in covered {
            if cur < s {
                gaps.push((cur, s));
            }
            cur = cur.max(e);
        }
        if cur < end {
            gaps.push((cur, end));
        }
        for (s, e) in gaps {
            let part = match &held {
                Held::Bytes(b) => {
                    Held::Bytes(b[(s - start) as usize..(e - start) as usize].to_vec())
                }
                Held::Placed { tag, offset, .. } => Held::Placed {
                    tag: *tag,
                    offset: offset + (s - start),
                    len: (e - s) as u32,
                },
            };
            self.held_bytes += e - s;
            self.held.insert(s, (part, crc_ok));
        }
    }

    fn flush<E>(&mut self, deliver: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (k, (held, crc_ok)) = entry.remove_entry();
            let len = held.len();
            self.held_bytes -= len;
            let end = k + len;
            if end <= self.next {
                continue;
            }
            let cut = (self.next - k) as usize;
            self.next = end;
            match held {
                Held::Bytes(b) => deliver(Piece::Bytes {
                    data: &b[cut..],
                    digest_ok: crc_ok,
                })?,
                Held::Placed { tag, offset, len } => deliver(Piece::Placed {
                    tag,
                    offset: offset + cut as u64,
                    len: len - cut as u32,
                    digest_ok: crc_ok,
                })?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: u32) -> RxSegment {
        RxSegment::new([Run::Bytes { len: n }], false)
    }

    fn collect(r: &mut Reassembly, seq: u32, data: &[u8], out: &mut Vec<u8>) {
        let seg = bytes(data.len() as u32);
        r.push(TcpSeq(seq), data, &seg, &mut |p: Piece<'_>| {
            if let Piece::Bytes { data, .. } = p {
                out.extend_from_slice(data);
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    }

    #[test]
    fn reorders_trims_and_wraps() {
        let stream: Vec<u8> = (0..100u8).collect();
        let base = u32::MAX - 30;
        let mut r = Reassembly::new(TcpSeq(base));
        let mut out = Vec::new();
        let at = |i: usize| base.wrapping_add(i as u32);
        collect(&mut r, at(50), &stream[50..70], &mut out);
        collect(&mut r, at(60), &stream[60..90], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.held_bytes(), 40);
        collect(&mut r, at(0), &stream[0..30], &mut out);
        collect(&mut r, at(10), &stream[10..55], &mut out);
        collect(&mut r, at(0), &stream[0..10], &mut out);
        collect(&mut r, at(85), &stream[85..100], &mut out);
        assert_eq!(out, stream);
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.next_seq(), TcpSeq(at(100)));
    }

    #[test]
    fn placed_runs_split_on_overlap() {
        let mut r = Reassembly::new(TcpSeq(0));
        let placed = RxSegment::new(
            [
                Run::Bytes { len: 4 },
                Run::Placed {
                    tag: Tag(1),
                    offset: 0,
                    len: 6,
                },
            ],
            true,
        );
        let mut got = Vec::new();
        let mut sink = |p: Piece<'_>| {
            got.push(match p {
                Piece::Bytes { data, digest_ok } => (0, data.len(), digest_ok),
                Piece::Placed { len, digest_ok, .. } => (1, len as usize, digest_ok),
            });
            Ok::<(), ()>(())
        };
        r.push(TcpSeq(10), &[0; 10], &placed, &mut sink).unwrap();
        r.push(TcpSeq(0), &[0; 16], &bytes(16), &mut sink).unwrap();
        assert_eq!(got, vec![(0, 16, false), (1, 4, true)]);
    }
}
