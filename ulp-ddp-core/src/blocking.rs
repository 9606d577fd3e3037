//! One loop for blocking drivers: any [`SansIo`] connection over a blocking socket.
//!
//! [`Driver::turn`] is what both protocols' blocking drivers do, once per wait: tell the state
//! machine the time, send what it has to send, wait for bytes (no longer than its next timer or
//! the caller's deadline), feed them through the reader path (payload straight into the
//! command's buffer), and send the answers they called for. The protocol crates add only what
//! their protocol needs on top (bring-up, commands, errors in its words).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::reader::{RecvError, SocketReader};
use crate::sansio::SansIo;
use crate::timer::earliest;
use crate::transmit::TransmitWriter;

/// A byte stream a blocking driver can wait on with a timeout: a `TcpStream`, or a wrapper of
/// one (a capture tee, a TLS session).
pub trait Socket: Read + Write {
    /// Sets how long a read may block (`None`: forever). A read that times out fails with
    /// [`io::ErrorKind::WouldBlock`] or [`io::ErrorKind::TimedOut`].
    ///
    /// # Errors
    ///
    /// The socket's.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Makes reads return at once with [`io::ErrorKind::WouldBlock`] when nothing is there.
    ///
    /// # Errors
    ///
    /// The socket's.
    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Self::set_read_timeout(self, timeout)
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        Self::set_nonblocking(self, nonblocking)
    }
}

/// A peer that went silent: nothing came from it for `waited` while a driver waited for
/// `what`. Both protocols' blocking errors carry it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Timeout {
    /// The peer, in words ("controller", "target").
    pub peer: &'static str,
    /// How long it was silent.
    pub waited: Duration,
    /// What the driver was waiting for, in words.
    pub what: String,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no answer from the {} in {:.1} s while waiting for {}",
            self.peer,
            self.waited.as_secs_f64(),
            self.what
        )
    }
}

impl std::error::Error for Timeout {}

/// What one [`Driver::turn`] did.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Turn {
    /// Bytes were read and handed to the connection (0: the peer closed the stream; bytes
    /// that made the engine fail count as 1).
    Read(usize),
    /// Woken without bytes: a timer of the connection or the caller's deadline is due.
    Woken,
    /// The connection is over; nothing more to read. Every further turn returns it at once:
    /// the caller stops turning.
    Closed,
}

/// How far a wake-up may miss the next deadline, so that the socket's read timeout is not set
/// before every read: it is set again only when the one in force would wake the driver more
/// than this before or after the deadline.
const WAKE_SLACK: Duration = Duration::from_millis(20);

/// A blocking driver's I/O half: the socket, the reader path and the transmit writer.
///
/// Reads wait no longer than the connection's next timer or the caller's deadline (a turn with
/// neither waits for bytes however long they take). Writes block until the peer takes the
/// bytes: give the socket a write timeout (both protocol crates do), so that a peer that stops
/// reading fails [`flush`](Self::flush) with a timeout error ([`is_timeout`]) instead of
/// blocking forever.
#[derive(Debug)]
pub struct Driver<S> {
    socket: S,
    reader: SocketReader,
    writer: TransmitWriter,
    /// The read timeout in force on the socket.
    armed: Option<Duration>,
    /// Receive buffer for the copy path ([`SansIo::reader_path`] false).
    scratch: Vec<u8>,
}

impl<S: Socket> Driver<S> {
    /// A driver over `socket` that reads every payload in place.
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            reader: SocketReader::new(4096),
            writer: TransmitWriter::new(),
            armed: None,
            scratch: Vec::new(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// Replaces the reader (for [`SocketReader::copy_small_payloads`]).
    pub fn set_reader(&mut self, reader: SocketReader) {
        self.reader = reader;
    }

    /// Sends everything `conn` has to send: small PDUs gathered into one write.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn flush<C: SansIo>(&mut self, conn: &mut C) -> io::Result<()> {
        while let Some(t) = conn.poll_transmit() {
            self.writer.push(&t, &mut self.socket)?;
        }
        self.writer.flush(&mut self.socket)
    }

    /// One turn: runs `conn`'s timers, sends what it has to send, waits for bytes no later than
    /// its next timer or `deadline`, feeds them, and sends the answers they called for.
    ///
    /// # Errors
    ///
    /// The socket's (a read timeout is [`Turn::Woken`], not an error).
    pub fn turn<C: SansIo>(&mut self, conn: &mut C, deadline: Option<Instant>) -> io::Result<Turn> {
        let now = Instant::now();
        conn.handle_timeout(now);
        self.flush(conn)?;
        if conn.is_closed() {
            return Ok(Turn::Closed);
        }
        match earliest([conn.poll_timeout(), deadline]) {
            Some(wake) if wake <= now => return Ok(Turn::Woken),
            Some(wake) => self.arm(Some(wake - now))?,
            None => self.arm(None)?,
        }
        let turn = match self.read(conn) {
            Ok(n) => Turn::Read(n),
            Err(e) if is_timeout(&e) => {
                // Woken for a timer: run it now, so that what it decided (a deadline passed)
                // is there when the turn returns, not one turn (one more wait) later.
                conn.handle_timeout(Instant::now());
                Turn::Woken
            }
            Err(e) => return Err(e),
        };
        self.flush(conn)?;
        Ok(turn)
    }

    /// Without waiting: takes whatever already arrived, then runs `conn`'s timers and sends
    /// what they call for (what a caller busy with another connection calls to keep this one
    /// alive).
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn poll<C: SansIo>(&mut self, conn: &mut C) -> io::Result<()> {
        self.flush(conn)?;
        self.socket.set_nonblocking(true)?;
        let mut result = Ok(());
        // Bounded: each round consumes at least one byte or stops.
        for _ in 0..1024 {
            if conn.is_closed() {
                break;
            }
            match self.read(conn) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.socket.set_nonblocking(false)?;
        result?;
        // Timers after the answers already there (a completed keep-alive lets the next go).
        conn.handle_timeout(Instant::now());
        self.flush(conn)
    }

    /// Sets the socket's read timeout to `wait` unless the one in force already wakes the
    /// driver no later than [`WAKE_SLACK`] after it (saving a system call per read).
    fn arm(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let wait = wait.map(|w| w.max(Duration::from_millis(1)));
        let keep = match (self.armed, wait) {
            (None, None) => true,
            (Some(armed), Some(wait)) => armed <= wait + WAKE_SLACK && armed + WAKE_SLACK >= wait,
            _ => false,
        };
        if !keep {
            self.socket.set_read_timeout(wait)?;
            self.armed = wait;
        }
        Ok(())
    }

    /// One read from the socket into `conn`: the reader path, or the copy path when `conn`
    /// asks for it. Engine errors are reported to `conn`, not returned.
    fn read<C: SansIo>(&mut self, conn: &mut C) -> io::Result<usize> {
        if !conn.reader_path() {
            if self.scratch.is_empty() {
                self.scratch = vec![0; 4096];
            }
            let n = loop {
                match self.socket.read(&mut self.scratch) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                conn.handle_received(Ok(0));
            } else {
                conn.handle_bytes(&self.scratch[..n]);
            }
            return Ok(n);
        }
        match self.reader.read_once(conn.engine_mut(), &mut self.socket) {
            Ok(n) => {
                conn.handle_received(Ok(n));
                Ok(n)
            }
            Err(RecvError::Engine(e)) => {
                // Bytes were read; the connection learns why they end it.
                conn.handle_received(Err(e));
                Ok(1)
            }
            Err(RecvError::Io(e)) => Err(e),
        }
    }
}

/// Whether a read or a write failed because the socket's timeout passed.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_timeout_is_a_wake_up() {
        assert!(is_timeout(&io::ErrorKind::WouldBlock.into()));
        assert!(is_timeout(&io::ErrorKind::TimedOut.into()));
        assert!(!is_timeout(&io::ErrorKind::ConnectionReset.into()));
    }
}
