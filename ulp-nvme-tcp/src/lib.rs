//! NVMe/TCP for the ULP DDP workspace: a complete host on the DDP contract.
//!
//! Connect, write, and read back, the data landing straight in the caller's buffer (this
//! example runs against the test bed's embedded target; `addr` is a controller's `HOST:PORT`,
//! such as `"192.0.2.10:4420"`, and `nqn` its subsystem NQN):
//!
//! ```
//! use ulp_nvme_tcp::{Controller, Options, SgBuffer};
//! # let target = ulp_testbed::nvme::Target::start(Default::default())?;
//! # let (addr, nqn) = (target.addr(), target.subnqn().to_string());
//!
//! let mut ctrl = Controller::connect(addr, &Options::new(&nqn))?; // Connect, enable, Identify
//! ctrl.write(8, SgBuffer::from(vec![0xA5; 1 << 20]))?; // 1 MiB at LBA 8
//! let buffer = ctrl.read(8, SgBuffer::zeroed(1 << 20))?; // your buffer comes back
//! assert!(buffer.into_vec().iter().all(|&b| b == 0xA5));
//! ctrl.close()?; // CC.SHN, as `nvme disconnect` does
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same host without I/O: bytes, commands and time in; transmits, events and the next
//! deadline out.
//!
//! ```
//! use std::time::Instant;
//! use ulp_nvme_tcp::{Connection, ConnectionConfig, Digests, NoOffload, QueueId, SansIo};
//!
//! let mut conn = Connection::new(ConnectionConfig::admin(QueueId(0), Digests::NONE), NoOffload);
//! {
//!     let icreq = conn.poll_transmit().expect("the ICReq opens the connection");
//!     assert_eq!((icreq.len(), icreq.parts()[0][0]), (128, 0x00)); // PDU type 0: ICReq
//! } // a transmit borrows the connection until it is written
//! // Write it to the socket, feed what comes back to `handle_bytes` (or the reader path),
//! // sleep no later than `poll_timeout()`, then tell the time:
//! conn.handle_timeout(Instant::now());
//! assert!(conn.poll_event().is_none(), "nothing happened yet");
//! ```
//!
//! - [`wire`]: typed views over NVMe/TCP PDU bytes, validated `Repr` values that parse and emit
//!   them, stream framing helpers and the CRC32C header and data digests.
//! - [`NvmeTcpHost`]: the receive engine's protocol plugin; each header a controller sends is
//!   framed, digest-checked and decoded once into a [`ControllerPdu`] (C2HData placed by CCCID
//!   and DATAO).
//! - [`Connection`]: the sans-IO host side of one queue, speaking the workspace's
//!   [`SansIo`] verbs (ICReq negotiation, commands, R2T and H2CData,
//!   C2HData through the engine, completions after teardown, Keep Alive as a timer,
//!   hostile-peer handling).
//! - [`nvme`]: the NVMe and Fabrics commands a host sends, status codes by name, and
//!   asynchronous events ([`nvme::AsyncEvent`]) in words.
//! - [`discovery`]: the NVMe over Fabrics Discovery Log Page, parsed and checked, shown as
//!   `nvme discover` shows it, and the header / page / header reading the specification asks
//!   for ([`discovery::LogReader`]).
//! - [`url`]: `nvme-tcp://HOST[:PORT]/SUBNQN/NSID` URLs ([`NvmeTcpUrl`]), as the CLI and the
//!   examples take them.
//! - [`bringup`]: the association's bring-up as sans-IO steps (Connect, CC.EN and CSTS.RDY,
//!   Identify, Number of Queues; shutdown) that every driver runs, and [`host_id`].
//! - [`blocking`]: the blocking driver over `std::net::TcpStream`, and
//!   [`blocking::Controller`] (admin queue and N I/O queues, recovery). Its default backend is
//!   [`NoOffload`]: payload is still read from the socket straight into the command's buffer.
//!   With the feature `tls`, [`Options::tls`] puts every queue inside TLS 1.3 with a PSK
//!   (TP 8011's secure channel, through `ulp-tls` on OpenSSL); payload is still decrypted
//!   straight into the command's buffer.
//! - [`psk`]: TLS pre-shared keys (TP 8011): the PSK interchange format, retained PSK,
//!   version 0 / 1 identities and the TLS PSK, as Linux and nvme-cli compute them.
//! - [`recovery`]: the recovery policy both drivers follow, sans-IO (when to reconnect, when
//!   to give up after `ctrl_loss_tmo`, what is issued again; the events in words).
//! - `tokio` (feature `tokio`): the async driver, `tokio::Controller`: the same connections
//!   and bring-up on tokio sockets, a task per queue, a cloneable handle whose `read`, `write`
//!   and `flush` any number of tasks await at once, Keep Alive from the connection's timers,
//!   reconnects as the blocking driver does, `close().await` with CC.SHN; errors are
//!   [`blocking::Error`], each with its buffer. With `tls` too, [`Options::tls`] works there
//!   as in the blocking driver.
//!
//! Everything above is re-exported at the crate root (the blocking [`Controller`], [`Options`],
//! [`Error`]; the sans-IO [`Connection`]; [`SgBuffer`], [`NoOffload`], [`Digests`] and the other
//! core types that appear in this crate's signatures), so a program needs imports from this
//! crate only; the modules stay for the less common pieces.
//!
//! The same roles carry the same names in `ulp-iscsi`: `Connection`, `ConnectionConfig`,
//! `Event`, `ConnectionError`, `Violation`, `Data`, `Completion`, `blocking`.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod bringup;
pub mod connection;
pub mod discovery;
pub mod nvme;
mod options;
pub mod plugin;
pub mod psk;
pub mod recovery;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod url;
pub mod wire;

// The flat API: what a user of the blocking driver or the sans-IO host needs, from this crate
// alone (the core's own types re-exported where they appear in this crate's signatures).
pub use blocking::{
    Controller, ControllerEvent, Error, Io, IoCompletion, IoError, Timeout, discover,
};
pub use bringup::host_id;
pub use connection::{
    Completion, Connection, ConnectionConfig, ConnectionError, Data, Event, Negotiated,
    SubmitError, Violation,
};
pub use discovery::DiscoveryLog;
pub use nvme::{AsyncEvent, ControllerInfo, NamespaceInfo, Status};
pub use options::Options;
pub use plugin::{ControllerPdu, NVME_TCP, NvmeTcpHost};
pub use ulp_ddp_core::{
    DdpBackend, Digests, NoOffload, QueueId, SansIo, SgBuffer, Stats, Transmit,
};
pub use url::{NvmeTcpUrl, UrlError};
