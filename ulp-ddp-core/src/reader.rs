//! The reader path: payload straight from a socket into the registered buffer.
//!
//! [`SocketReader`] drives an [`Engine`] from any [`std::io::Read`] (a `TcpStream`, a TLS
//! stream): whatever the backend, payload of a registered command is read from the source
//! straight into the command's buffer and digested while it is hot in cache, as SPDK receives.
//! It is generic over the engine's protocol and backend, so protocol crates use it without
//! naming a backend.

use std::fmt;
use std::io::{self, Read};

use crate::{DdpBackend, Engine, Error, Piece, Protocol, ReadTarget};

/// Why [`SocketReader::read_once`] stopped. `E` is the protocol plugin's error type.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError<E> {
    /// The source failed (including `WouldBlock` on a non-blocking socket, and a read timeout).
    Io(io::Error),
    /// The engine hit a fatal error: close the connection.
    Engine(Error<E>),
}

impl<E: fmt::Display> fmt::Display for RecvError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Engine(e) => write!(f, "receive engine: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RecvError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Engine(e) => Some(e),
        }
    }
}

impl<E> From<io::Error> for RecvError<E> {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl<E> From<Error<E>> for RecvError<E> {
    fn from(e: Error<E>) -> Self {
        Self::Engine(e)
    }
}

/// Feeds an [`Engine`] from a byte source, reading payload of registered commands straight into
/// their buffers ([`ReadTarget::InPlace`]) and everything else (headers, digests, control
/// PDUs) through a small receive buffer.
///
/// By default each `read` asks the source for exactly what the engine can take without pulling
/// payload through the receive buffer, so the placement counters show
/// [`bytes_read_in_place`](crate::Stats::bytes_read_in_place) for every payload byte and
/// no [`bytes_copied`](crate::Stats::bytes_copied); a payload window that ends the
/// PDU's data is read together with what follows it (data digest, the header-only response
/// the plugin expects ([`Protocol::expected_after`]), the next header) in one vectored read
/// ([`Engine::after_payload`]). That still costs a system call per PDU, which dominates
/// small commands; with
/// [`copy_small_payloads`](Self::copy_small_payloads), while every outstanding command expects
/// less than a threshold, the reader instead fills its whole receive buffer with each read
/// (headers and payloads of many PDUs at once) and the engine copies those small payloads
/// (SPDK's policy for small I/O).
#[derive(Debug)]
pub struct SocketReader {
    scratch: Vec<u8>,
    copy_below: u64,
}

impl SocketReader {
    /// A reader whose receive buffer holds `scratch_len` bytes (at least one header; 4 KiB is
    /// plenty for NVMe/TCP and iSCSI when every payload is read in place).
    pub fn new(scratch_len: usize) -> Self {
        Self {
            scratch: vec![0; scratch_len.max(64)],
            copy_below: 0,
        }
    }

    /// Reads through the receive buffer, as much as it holds per `read`, whenever every command
    /// registered with the engine expects fewer than `threshold` more payload bytes
    /// ([`Engine::max_expected_payload`]); otherwise as [`new`](Self::new) does. `0` turns
    /// it off. A PDU carrying `threshold` data bytes or more is read in place to its end, and
    /// no command has `threshold` bytes or more copied (a receive buffer of a few times the
    /// threshold makes each read worth it: 64 KiB for 16 KiB).
    #[must_use]
    pub fn copy_small_payloads(mut self, threshold: u64) -> Self {
        self.copy_below = threshold;
        self
    }

    /// Performs one `read` from `src` and hands the bytes to `engine`. Returns the bytes read;
    /// `0` means the source reached its end.
    ///
    /// # Errors
    ///
    /// [`RecvError::Io`] if the source fails, [`RecvError::Engine`] on a fatal engine error.
    pub fn read_once<P, B, R>(
        &mut self,
        engine: &mut Engine<P, B>,
        src: &mut R,
    ) -> Result<usize, RecvError<P::Error>>
    where
        P: Protocol,
        B: DdpBackend,
        R: Read + ?Sized,
    {
        let greedy = self.copy_below > 0 && engine.max_expected_payload() < self.copy_below;
        if greedy {
            let n = read_retrying(src, &mut self.scratch)?;
            engine.receive(Piece::bytes(&self.scratch[..n]))?;
            return Ok(n);
        }
        // What may follow the payload window in the same read (its digest, the next header):
        // known before `read_target` borrows the engine for the window.
        let after = engine.after_payload();
        match engine.read_target() {
            ReadTarget::InPlace(window) => {
                let window_len = window.len();
                let extra = match after {
                    Some((left, safe)) if left == window_len => safe.min(self.scratch.len()),
                    _ => 0,
                };
                let n = if extra == 0 {
                    read_retrying(src, window)?
                } else {
                    let mut bufs = [
                        io::IoSliceMut::new(window),
                        io::IoSliceMut::new(&mut self.scratch[..extra]),
                    ];
                    read_vectored_retrying(src, &mut bufs)?
                };
                let in_place = n.min(window_len);
                if in_place > 0 {
                    engine.commit_in_place(in_place)?;
                }
                if n > window_len {
                    engine.receive(Piece::bytes(&self.scratch[..n - window_len]))?;
                }
                Ok(n)
            }
            ReadTarget::Bytes(max) => {
                let len = max.clamp(1, self.scratch.len());
                let n = read_retrying(src, &mut self.scratch[..len])?;
                engine.receive(Piece::bytes(&self.scratch[..n]))?;
                Ok(n)
            }
        }
    }
}

fn read_vectored_retrying<R: Read + ?Sized>(
    src: &mut R,
    bufs: &mut [io::IoSliceMut<'_>],
) -> io::Result<usize> {
    retry(|| src.read_vectored(bufs))
}

fn read_retrying<R: Read + ?Sized>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| src.read(buf))
}

/// Repeats a read interrupted by a signal.
fn retry(mut read: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match read() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
