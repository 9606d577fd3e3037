//! # ulp-iscsi: an iSCSI initiator on the direct data placement contract (RFC 7143)
//!
//! - [`wire`]: the PDU codec (typed views and `Repr`s for every PDU an initiator handles).
//! - [`IscsiInitiator`]: the [`ulp_ddp_core::Protocol`] plugin: each header a target sends is
//!   framed, digest-checked and decoded once into a [`TargetPdu`]; Data-In payload goes to the
//!   command's buffer by Initiator Task Tag and Buffer Offset; the data digest covers the pad.
//! - [`Connection`]: the sans-IO initiator side of one connection, speaking the workspace's
//!   [`SansIo`] verbs: login (security, operational, full feature;
//!   multi-round, CHAP), CmdSN window, StatSN, SCSI commands with Data-In placement, immediate
//!   and unsolicited data and R2T, NOP (and NOP-Out pings as a timer), SendTargets, logout, and
//!   the protocol's answer to a hostile target (drop the connection, typed [`Violation`]s).
//! - [`blocking::Session`]: the blocking `std::net` driver using the reader path (payload read
//!   from the socket straight into the command's buffer) and vectored sends (no payload copy).
//!   Its default backend is [`NoOffload`].
//! - [`scsi`], [`keys`], [`chap`], [`md5`], [`serial`], [`url`]: the pieces.
//!
//! The same roles carry the same names in `ulp-nvme-tcp`: `Connection`, `ConnectionConfig`,
//! `Event`, `ConnectionError`, `Violation`, `Data`, `Completion`, `blocking`.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod chap;
pub mod connection;
pub mod keys;
pub mod md5;
pub mod plugin;
pub mod scsi;
pub mod serial;
pub mod url;
pub mod wire;

pub use connection::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionConfig, ConnectionError,
    Data, Event, ScsiOutcome, Violation,
};
pub use plugin::{ISCSI, IscsiInitiator, TargetPdu};
pub use ulp_ddp_core::{Digests, NoOffload, SansIo, SgBuffer};
