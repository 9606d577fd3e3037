//! # ulp-iscsi: an iSCSI initiator on the direct data placement contract (RFC 7143)
//!
//! - [`wire`]: the PDU codec (typed views and `Repr`s for every PDU an initiator handles).
//! - [`plugin::IscsiInitiator`]: the [`ulp_ddp_core::Protocol`] plugin: Data-In payload goes
//!   to the command's buffer by Initiator Task Tag and Buffer Offset; the data digest covers
//!   the pad.
//! - [`conn::Connection`]: the sans-IO initiator: login (security, operational, full feature;
//!   multi-round, CHAP), CmdSN window, StatSN, SCSI commands with Data-In placement, immediate
//!   and unsolicited data and R2T, NOP, SendTargets, logout, and the protocol's answer to a
//!   hostile target (drop the connection, typed errors).
//! - [`client::Client`]: a blocking `std::net` driver using the reader path (payload read from
//!   the socket straight into the command's buffer) and vectored sends (no payload copy).
//! - [`target::EmbeddedTarget`]: a strict in-process iSCSI target with a RAM LUN, for tests, the
//!   CLI and hostile-peer tests.
//! - [`scsi`], [`keys`], [`chap`], [`md5`], [`serial`], [`pcap`], [`url`]: the pieces.
#![forbid(unsafe_code)]

pub mod chap;
pub mod client;
pub mod conn;
pub mod keys;
pub mod md5;
pub mod pcap;
pub mod plugin;
pub mod scsi;
pub mod serial;
pub mod target;
pub mod url;
pub mod wire;

pub use bytes::Bytes;
pub use client::{Client, ClientError, ClientOptions};
pub use conn::{
    Command, CommandError, CommandId, Completion, ConnError, Connection, DataDir, LoginConfig,
    ScsiOutcome, SessionEvent,
};
pub use plugin::{ISCSI, IscsiInitiator, TargetPdu};
