//! [`Capturing`]: the TCP stream with an optional copy of what crosses it (for pcap files).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ulp_ddp_core::blocking::Socket;

/// Which way captured bytes travelled ([`Session::capture`](super::Session::capture)).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Direction {
    /// Initiator to target.
    ToTarget,
    /// Target to initiator.
    FromTarget,
}

/// A TCP stream that keeps a copy of what crosses it, when asked.
#[derive(Debug)]
pub struct Capturing {
    pub(super) stream: TcpStream,
    pub(super) capture: Option<Vec<(Direction, Vec<u8>)>>,
}

impl Capturing {
    fn push(&mut self, dir: Direction, bytes: &[u8]) {
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        match c.last_mut() {
            Some((d, v)) if *d == dir => v.extend_from_slice(bytes),
            _ => c.push((dir, bytes.to_vec())),
        }
    }
}

impl Read for Capturing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.push(Direction::FromTarget, &buf[..n]);
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let n = self.stream.read_vectored(bufs)?;
        if self.capture.is_some() {
            let mut left = n;
            for b in bufs.iter() {
                let k = left.min(b.len());
                let piece = b[..k].to_vec();
                self.push(Direction::FromTarget, &piece);
                left -= k;
            }
        }
        Ok(n)
    }
}

impl Write for Capturing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.push(Direction::ToTarget, &buf[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.stream.write_vectored(bufs)?;
        if self.capture.is_some() {
            let mut left = n;
            for b in bufs {
                let k = left.min(b.len());
                self.push(Direction::ToTarget, &b[..k]);
                left -= k;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Socket for Capturing {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }
}
