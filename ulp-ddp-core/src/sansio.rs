//! The verbs every sans-IO connection of the workspace speaks, in the spirit of quinn-proto.
//!
//! A protocol's connection state machine (NVMe/TCP's `ulp_nvme_tcp::Connection`, iSCSI's
//! `ulp_iscsi::Connection`) does no I/O, reads no clock and spawns nothing. A driver moves bytes
//! and time in and out:
//!
//! | direction | verb |
//! |---|---|
//! | bytes in (copy path) | [`handle_bytes`](SansIo::handle_bytes) |
//! | bytes in (reader path) | [`engine_mut`](SansIo::engine_mut), then [`handle_received`](SansIo::handle_received) |
//! | bytes out | [`poll_transmit`](SansIo::poll_transmit) |
//! | time in | [`handle_timeout`](SansIo::handle_timeout) |
//! | when time is next needed | [`poll_timeout`](SansIo::poll_timeout) |
//! | what happened | each protocol's own `poll_event` |
//!
//! A driver calls `handle_timeout(now)` at the top of every turn (the state machine's timers,
//! keep-alive and pings, are started from it), sends what `poll_transmit` gives, and waits for
//! bytes no longer than until `poll_timeout()`. [`crate::blocking::Driver`] is that loop for
//! blocking sockets; an async or io_uring driver is the same loop on another runtime.

use std::time::Instant;

use crate::backend::DdpBackend;
use crate::engine::Engine;
use crate::error::Error;
use crate::protocol::Protocol;
use crate::transmit::Transmit;

/// A sans-IO connection state machine: see the [module documentation](self).
pub trait SansIo {
    /// The protocol plugin its receive engine frames PDUs with.
    type Protocol: Protocol;
    /// The DDP backend its receive engine drives.
    type Backend: DdpBackend;

    /// Time passes: runs every timer due at `now` (keep-alive, pings, deadlines) and starts
    /// those waiting to learn the time.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) must run next, if any timer is armed. A
    /// timer started since the last `handle_timeout` reports the time of that call: due at once.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next PDU to send, borrowed from the state machine (its payload from the caller's
    /// write buffer). `None` when nothing can be sent now.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>>;

    /// Appends every PDU ready to send, whole, to `out`: a copy, for tests and captures
    /// (drivers use [`poll_transmit`](Self::poll_transmit), which copies no payload).
    fn transmit_all(&mut self, out: &mut Vec<u8>) {
        while let Some(t) = self.poll_transmit() {
            for part in t.parts() {
                out.extend_from_slice(part);
            }
        }
    }

    /// Received bytes, any split (the copy path: payload is copied into command buffers).
    fn handle_bytes(&mut self, bytes: &[u8]);

    /// Whether the reader path ([`engine_mut`](Self::engine_mut) and
    /// [`handle_received`](Self::handle_received)) may be used now; if not, bytes go through
    /// [`handle_bytes`](Self::handle_bytes) (iSCSI during login, where each PDU must be handled
    /// before the next is framed).
    fn reader_path(&self) -> bool {
        true
    }

    /// The receive engine, for the reader path: a driver reads socket bytes where
    /// [`Engine::read_target`] says (straight into a command's buffer for payload), hands them
    /// over ([`Engine::receive`], [`Engine::commit_in_place`], or
    /// [`SocketReader`](crate::reader::SocketReader)), then calls
    /// [`handle_received`](Self::handle_received).
    fn engine_mut(&mut self) -> &mut Engine<Self::Protocol, Self::Backend>;

    /// Processes what the reader path fed the engine: `Ok(0)` is the end of the stream,
    /// `Ok(n)` that `n` bytes went in, `Err` a fatal engine error (the connection ends with the
    /// termination its protocol prescribes).
    fn handle_received(
        &mut self,
        result: Result<usize, Error<<Self::Protocol as Protocol>::Error>>,
    );

    /// Whether the connection is over (close the socket once nothing is left to transmit).
    fn is_closed(&self) -> bool;
}
