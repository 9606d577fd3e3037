//! Bytes out: one PDU to send, as the slices to write in order, and a writer that sends them.
//!
//! Both protocols' state machines hand out a [`Transmit`] from `poll_transmit`: the PDU's
//! header (built in a small buffer), its payload (borrowed from the caller's write buffer, never
//! copied) and its trailer (pad and data digest). A driver writes the parts in order, with one
//! vectored write; [`TransmitWriter`] does that over any [`std::io::Write`] and gathers small
//! PDUs (command capsules, pings) so that a batch of them costs one system call.

use std::io::{self, IoSlice, Write};

use smallvec::SmallVec;

/// One PDU to send: its parts, to be written in order.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Transmit<'a> {
    parts: SmallVec<[&'a [u8]; 4]>,
}

impl<'a> Transmit<'a> {
    /// A PDU made of `header`, the `payload` slices and `trailer` (empty parts are left out).
    pub fn new(
        header: &'a [u8],
        payload: impl IntoIterator<Item = &'a [u8]>,
        trailer: &'a [u8],
    ) -> Self {
        let mut parts = SmallVec::new();
        for part in core::iter::once(header)
            .chain(payload)
            .chain(core::iter::once(trailer))
        {
            if !part.is_empty() {
                parts.push(part);
            }
        }
        Self { parts }
    }

    /// The parts, in the order they go on the wire.
    pub fn parts(&self) -> &[&'a [u8]] {
        &self.parts
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Whether there is nothing to send (never the case for a real PDU).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The whole PDU in one buffer (a copy: for tests and captures).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

/// Most bytes of a PDU that [`TransmitWriter`] copies into its gather buffer rather than
/// writing with its own system call.
const GATHER_MAX: usize = 512;

/// Writes [`Transmit`]s to a blocking writer: PDUs of at most 512 bytes (capsules, pings,
/// responses to the target) are gathered and go out with the next larger PDU or at
/// [`flush`](Self::flush), larger ones with one vectored write each. Payload is never copied.
#[derive(Debug, Default)]
pub struct TransmitWriter {
    gathered: Vec<u8>,
}

impl TransmitWriter {
    /// A writer with an empty gather buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `t`, or keeps it for the next write if it is small.
    ///
    /// # Errors
    ///
    /// The writer's error.
    pub fn push<W: Write + ?Sized>(&mut self, t: &Transmit<'_>, w: &mut W) -> io::Result<()> {
        if t.len() <= GATHER_MAX {
            for part in t.parts() {
                self.gathered.extend_from_slice(part);
            }
            return Ok(());
        }
        let mut slices: SmallVec<[&[u8]; 5]> = SmallVec::new();
        if !self.gathered.is_empty() {
            slices.push(&self.gathered);
        }
        slices.extend_from_slice(t.parts());
        let result = write_all_vectored(w, &slices);
        drop(slices);
        self.gathered.clear();
        result
    }

    /// Sends whatever is gathered.
    ///
    /// # Errors
    ///
    /// The writer's error.
    pub fn flush<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        if !self.gathered.is_empty() {
            write_all_vectored(w, &[&self.gathered])?;
            self.gathered.clear();
        }
        Ok(())
    }
}

/// Writes every slice, in order, with vectored writes (retrying on `Interrupted`).
///
/// # Errors
///
/// The writer's error; [`io::ErrorKind::WriteZero`] if it takes no byte.
pub fn write_all_vectored<W: Write + ?Sized>(w: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    let mut storage: SmallVec<[IoSlice<'_>; 6]> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut slices = &mut storage[..];
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An output buffer shorter than what an emitter must write into it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BufferTooSmall {
    /// Bytes needed.
    pub need: usize,
    /// Bytes the buffer has.
    pub have: usize,
}

impl std::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "output buffer too small: need {} bytes, have {}",
            self.need, self.have
        )
    }
}

impl std::error::Error for BufferTooSmall {}

/// The first `need` bytes of `buf`, zeroed: where a protocol's emitter writes a PDU header
/// (its reserved fields zero). Both protocols' codecs start their headers here.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than `need`.
pub fn header_space(buf: &mut [u8], need: usize) -> Result<&mut [u8], BufferTooSmall> {
    let have = buf.len();
    let out = buf.get_mut(..need).ok_or(BufferTooSmall { need, have })?;
    out.fill(0);
    Ok(out)
}

/// Checks that `buf` holds at least `need` bytes, before an emitter writes a whole PDU.
///
/// # Errors
///
/// [`BufferTooSmall`] if it does not.
pub fn check_space(buf: &[u8], need: usize) -> Result<(), BufferTooSmall> {
    if buf.len() < need {
        return Err(BufferTooSmall {
            need,
            have: buf.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_space_is_zeroed_and_checked() {
        let mut buf = [0xFFu8; 8];
        assert_eq!(
            header_space(&mut buf, 5).map(|h| h.to_vec()),
            Ok(vec![0; 5])
        );
        assert_eq!(buf[5..], [0xFF; 3], "only the header's bytes are zeroed");
        let err = header_space(&mut buf, 9).unwrap_err();
        assert_eq!(err, BufferTooSmall { need: 9, have: 8 });
        assert_eq!(
            err.to_string(),
            "output buffer too small: need 9 bytes, have 8"
        );
        assert_eq!(check_space(&buf, 8), Ok(()));
        assert_eq!(
            check_space(&buf, 9),
            Err(BufferTooSmall { need: 9, have: 8 })
        );
    }

    /// A writer that takes at most `chunk` bytes per call and records calls.
    struct Slow {
        out: Vec<u8>,
        chunk: usize,
        calls: usize,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.chunk);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.chunk - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.chunk {
                    break;
                }
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_skip_empty_slices_and_keep_order() {
        let t = Transmit::new(b"hdr", [&b""[..], b"pay", b"load"], b"");
        assert_eq!(t.parts(), &[&b"hdr"[..], b"pay", b"load"]);
        assert_eq!(t.len(), 10);
        assert_eq!(t.to_vec(), b"hdrpayload");
    }

    #[test]
    fn small_pdus_are_gathered_into_one_write() {
        let mut w = Slow {
            out: Vec::new(),
            chunk: usize::MAX,
            calls: 0,
        };
        let mut tw = TransmitWriter::new();
        for i in 0..4u8 {
            tw.push(&Transmit::new(&[i; 72], [], b""), &mut w).unwrap();
        }
        assert_eq!(w.calls, 0);
        let big = vec![9u8; 4096];
        tw.push(&Transmit::new(&[7; 24], [&big[..]], &[1, 2, 3, 4]), &mut w)
            .unwrap();
        assert_eq!(w.calls, 1, "the gathered capsules go out with the data PDU");
        assert_eq!(w.out.len(), 4 * 72 + 24 + 4096 + 4);
        tw.push(&Transmit::new(&[5; 48], [], b""), &mut w).unwrap();
        tw.flush(&mut w).unwrap();
        assert_eq!(w.out.len(), 4 * 72 + 24 + 4096 + 4 + 48);
        assert_eq!(&w.out[..72], &[0; 72]);
    }

    #[test]
    fn short_writes_are_resumed() {
        let mut w = Slow {
            out: Vec::new(),
            chunk: 3,
            calls: 0,
        };
        write_all_vectored(&mut w, &[b"abcd", b"", b"efghij"]).unwrap();
        assert_eq!(w.out, b"abcdefghij");
    }
}
