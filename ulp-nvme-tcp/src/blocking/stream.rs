//! The byte stream of one blocking queue: the TCP connection itself, or (feature `tls`) a TLS
//! 1.3 session over it (NVMe TP 8011's secure channel), which the blocking loop reads PDUs from
//! and writes them to the same way.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ulp_ddp_core::blocking::Socket;

/// One queue's byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plaintext NVMe/TCP.
    Plain(TcpStream),
    /// NVMe/TCP inside TLS 1.3 with a PSK: a read decrypts into the slice it is given (the
    /// reader path hands the command's buffer), so payload goes kernel → OpenSSL's record
    /// buffer → command buffer.
    #[cfg(feature = "tls")]
    Tls(Box<ulp_tls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath (its fd for poll(2), timeouts, shutdown).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.get_ref(),
        }
    }

    /// Decrypted bytes already taken off the socket and held by the TLS library: a wait on the
    /// socket's fd does not see them, so whoever polls the fd checks this first.
    pub(crate) fn buffered(&self) -> usize {
        match self {
            Self::Plain(_) => 0,
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.pending(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => match s.read(buf) {
                // close_notify: the end of the stream as a TCP FIN would be, but named, so
                // that a session ended in the middle of a PDU says how it ended.
                Ok(0) if s.peer_closed() => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the controller closed the TLS session (close_notify)",
                )),
                other => other,
            }
            .map_err(|e| {
                // The transport's timeout (or a non-blocking socket with nothing there): the
                // session stays usable; the driver's loop knows it as a wake-up.
                if matches!(
                    ulp_tls::StreamError::of(&e),
                    Some(ulp_tls::StreamError::TimedOut)
                ) {
                    io::ErrorKind::WouldBlock.into()
                } else {
                    e
                }
            }),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => write_gathered(s, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.flush(),
        }
    }
}

/// The most plaintext one TLS record carries.
#[cfg(feature = "tls")]
const RECORD: usize = 16 * 1024;

/// A gathered write over TLS: the pieces of a transmit (header, payload, digest; several small
/// PDUs) go out in as few records as they fit, not a record each.
#[cfg(feature = "tls")]
fn write_gathered(
    tls: &mut ulp_tls::TlsStream<TcpStream>,
    bufs: &[io::IoSlice<'_>],
) -> io::Result<usize> {
    let mut gathered = Vec::new();
    tls.write(next_record(bufs, &mut gathered))
}

/// What the next TLS record carries of `bufs` (the blocking and the tokio driver's writes): a
/// piece of a record's size or more is encrypted straight from the caller's slice; smaller ones
/// are gathered into `gathered` first, up to a record (OpenSSL encrypts from one contiguous
/// slice). Empty when `bufs` holds no bytes.
#[cfg(feature = "tls")]
pub(crate) fn next_record<'a>(bufs: &'a [io::IoSlice<'_>], gathered: &'a mut Vec<u8>) -> &'a [u8] {
    let mut pieces = bufs.iter().filter(|b| !b.is_empty()).peekable();
    match pieces.peek() {
        None => return &[],
        Some(first) if first.len() >= RECORD => return first,
        Some(_) => {}
    }
    gathered.clear();
    gathered.reserve(RECORD);
    for piece in pieces {
        let room = RECORD - gathered.len();
        gathered.extend_from_slice(&piece[..piece.len().min(room)]);
        if gathered.len() == RECORD {
            break;
        }
    }
    gathered
}

impl Socket for Stream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.tcp().set_nonblocking(nonblocking)
    }
}

/// The TLS client for `psk`: the cipher suite of its hash only (TLS_AES_128_GCM_SHA256 for a
/// SHA-256 PSK, the suite every NVMe/TCP target supports; TLS_AES_256_GCM_SHA384 for SHA-384),
/// through OpenSSL's session callbacks; both drivers' handshakes use it.
#[cfg(feature = "tls")]
pub(crate) fn client(psk: &crate::psk::TlsPsk) -> Result<ulp_tls::PskClient, String> {
    use crate::psk::TlsHash;
    let hash = match psk.hash() {
        TlsHash::Sha256 => ulp_tls::PskHash::Sha256,
        TlsHash::Sha384 => ulp_tls::PskHash::Sha384,
    };
    ulp_tls::PskClient::with_hash(psk.identity().as_bytes(), psk.key(), hash)
        .map_err(|e| e.to_string())
}

/// Runs the TLS 1.3 handshake with `psk` on `tcp`.
#[cfg(feature = "tls")]
pub(crate) fn handshake(
    tcp: TcpStream,
    psk: &crate::psk::TlsPsk,
    timeout: Duration,
) -> Result<Stream, String> {
    let client = client(psk)?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let tls = client.connect(tcp).map_err(|e| e.to_string())?;
    // The blocking loop arms the read timeout itself, starting from "none".
    tls.get_ref()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// Without the `tls` feature there is no TLS to speak: the error says so.
#[cfg(not(feature = "tls"))]
pub(crate) fn handshake(
    _tcp: TcpStream,
    _psk: &crate::psk::TlsPsk,
    _timeout: Duration,
) -> Result<Stream, String> {
    Err(NO_TLS.into())
}

/// Why a build without the `tls` feature cannot honour `Options::tls`.
#[cfg(not(feature = "tls"))]
pub(crate) const NO_TLS: &str = "this build of ulp-nvme-tcp has no TLS (cargo feature `tls`)";

/// A failed handshake on queue `qid` to `addr`, in words (both drivers).
pub(crate) fn tls_failed(qid: u16, addr: std::net::SocketAddr, reason: &str) -> super::Error {
    let queue = if qid == 0 {
        "the admin queue".to_string()
    } else {
        format!("I/O queue {qid}")
    };
    super::Error::Tls(format!("{queue} to {addr}: {reason}"))
}
