//! The reader path: payload straight from a socket into the registered buffer.

use std::fmt;
use std::io::{self, Read};

use ulp_ddp_core::{DdpBackend, Engine, Error, Piece, Protocol, ReadTarget};

/// Why [`SocketReader::read_once`] stopped.
#[derive(Debug)]
pub enum RecvError {
    /// The socket failed (including `WouldBlock` on a non-blocking socket).
    Io(io::Error),
    /// The engine hit a fatal error: close the connection.
    Engine(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Engine(e) => write!(f, "receive engine: {e}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Engine(e) => Some(e),
        }
    }
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> Self {
        Self::Engine(e)
    }
}

/// Feeds an [`Engine`] from a byte source, reading payload of registered commands straight into
/// their buffers ([`ReadTarget::InPlace`]) and everything else (headers, digests, control
/// PDUs) through a small receive buffer.
///
/// Each `read` asks the source for exactly what the engine can take without pulling payload
/// through the receive buffer, so the placement counters show
/// [`bytes_read_in_place`](ulp_ddp_core::Stats::bytes_read_in_place) for every payload byte and
/// no [`bytes_copied`](ulp_ddp_core::Stats::bytes_copied).
#[derive(Debug)]
pub struct SocketReader {
    scratch: Vec<u8>,
}

impl SocketReader {
    /// A reader whose receive buffer holds `scratch_len` bytes (at least one header; 4 KiB is
    /// plenty for NVMe/TCP and iSCSI).
    pub fn new(scratch_len: usize) -> Self {
        Self {
            scratch: vec![0; scratch_len.max(64)],
        }
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
    ) -> Result<usize, RecvError>
    where
        P: Protocol,
        B: DdpBackend,
        R: Read + ?Sized,
    {
        match engine.read_target() {
            ReadTarget::InPlace(window) => {
                let n = read_retrying(src, window)?;
                if n > 0 {
                    engine.commit_in_place(n)?;
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

fn read_retrying<R: Read + ?Sized>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
