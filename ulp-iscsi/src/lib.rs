//! # ulp-iscsi: an iSCSI initiator on the direct data placement contract (RFC 7143)
//!
//! Log in, write, and read back, the data landing straight in the caller's buffer (this
//! example runs against the test bed's embedded target; `addr` is a target's `HOST:PORT`, such
//! as `"192.0.2.10:3260"`, and `iqn` its name):
//!
//! ```
//! use ulp_iscsi::{ConnectionConfig, Lun, Options, Session, SgBuffer};
//! # let target = ulp_testbed::iscsi::Target::start(Default::default())?;
//! # let (addr, iqn) = (target.addr().to_string(), target.iqn().to_string());
//!
//! let config = ConnectionConfig::normal("iqn.2024-01.io.example:host", &iqn);
//! let mut session = Session::connect(addr.as_str(), config, Options::default())?;
//! let lun = Lun::single_level(0);
//! session.write(lun, 8, SgBuffer::from(vec![0xA5; 1 << 20]))?; // 1 MiB at LBA 8
//! let buffer = session.read(lun, 8, SgBuffer::zeroed(1 << 20))?; // your buffer comes back
//! assert!(buffer.into_vec().iter().all(|&b| b == 0xA5));
//! session.logout()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same initiator without I/O: bytes, commands and time in; transmits, events and the
//! next deadline out.
//!
//! ```
//! use std::time::Instant;
//! use ulp_iscsi::{Connection, ConnectionConfig, NoOffload, SansIo};
//!
//! let config = ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:disk");
//! let mut conn = Connection::new(config, NoOffload);
//! conn.start_login()?;
//! {
//!     let login = conn.poll_transmit().expect("the Login Request opens the connection");
//!     assert_eq!(login.parts()[0][0] & 0x3F, 0x03); // opcode 0x03: Login Request
//! } // a transmit borrows the connection until it is written
//! // Write it to the socket, feed what comes back to `handle_bytes` (or the reader path),
//! // sleep no later than `poll_timeout()`, then tell the time:
//! conn.handle_timeout(Instant::now());
//! assert!(conn.poll_event().is_none(), "nothing happened yet");
//! # Ok::<(), ulp_iscsi::ConnectionError>(())
//! ```
//!
//! - [`wire`]: the PDU codec (typed views and `Repr`s for every PDU an initiator handles).
//! - [`IscsiInitiator`]: the [`ulp_ddp_core::Protocol`] plugin: each header a target sends is
//!   framed, digest-checked and decoded once into a [`TargetPdu`]; Data-In payload goes to the
//!   command's buffer by Initiator Task Tag and Buffer Offset; the data digest covers the pad.
//! - [`Connection`]: the sans-IO initiator side of one connection, speaking the workspace's
//!   [`SansIo`] verbs: login (security, operational, full feature;
//!   multi-round, one-way and mutual CHAP), CmdSN window, StatSN, SCSI commands with Data-In placement, immediate
//!   and unsolicited data and R2T, NOP (and NOP-Out pings as a timer), SendTargets, logout, and
//!   the protocol's answer to a hostile target (drop the connection, typed [`Violation`]s).
//! - [`blocking::Session`]: the blocking `std::net` driver using the reader path (payload read
//!   from the socket straight into the command's buffer) and vectored sends (no payload copy).
//!   Its default backend is [`NoOffload`].
//! - `tokio::Session` (feature `tokio`): the same `Connection` driven by one tokio task,
//!   behind a cloneable handle whose `async` methods many tasks call at once; timers through
//!   `tokio::time::sleep_until`, payload read in place with `readable` + `try_read`; session
//!   reinstatement as the blocking driver's.
//! - [`recovery`]: the session reinstatement policy both drivers run (which commands go out
//!   again, when the next attempt is due, fatal login failures, when to give up, the
//!   [`SessionEvent`]s), sans-IO.
//! - [`bringup`]: what both drivers do between "TCP connected" and "ready for I/O" (login,
//!   then TEST UNIT READY / READ CAPACITY per LUN) as sans-IO steps, for a driver on any
//!   runtime.
//! - [`scsi`], [`keys`], [`chap`], [`serial`], [`url`]: the pieces.
//!
//! The blocking [`Session`], its [`Options`] and [`Error`], the sans-IO [`Connection`], [`Lun`],
//! the error types, and the core types that appear in this crate's signatures ([`SgBuffer`],
//! [`NoOffload`], [`Digests`]) are re-exported at the crate root, so a program needs imports
//! from this crate only; the modules stay for the less common pieces.
//!
//! The same roles carry the same names in `ulp-nvme-tcp`: `Connection`, `ConnectionConfig`,
//! `Event`, `ConnectionError`, `Violation`, `Data`, `Completion`, `blocking`.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod bringup;
pub mod chap;
pub mod connection;
pub mod keys;
pub mod plugin;
pub mod recovery;
pub mod scsi;
pub mod serial;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod url;
pub mod wire;

// The flat API: what a user of the blocking driver or the sans-IO initiator needs, from this
// crate alone (the core's own types re-exported where they appear in this crate's signatures).
pub use blocking::{Error, Options, Session, SessionEvent, Timeout};
pub use chap::ChapError;
pub use connection::{
    AsyncEvent, ChapCredentials, Command, CommandError, CommandId, Completion, Connection,
    ConnectionConfig, ConnectionError, Data, DiscoveredTarget, Event, Recovery, ScsiOutcome,
    Violation,
};
pub use keys::NegotiationError;
pub use plugin::{ISCSI, IscsiInitiator, TargetPdu};
pub use scsi::{Capacity, Inquiry, Sense};
pub use ulp_ddp_core::{DdpBackend, Digests, NoOffload, SansIo, SgBuffer, Stats, Transmit};
pub use url::{IscsiUrl, UrlError};
pub use wire::Lun;
