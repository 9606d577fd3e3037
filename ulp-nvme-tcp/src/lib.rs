//! NVMe/TCP for the ULP DDP workspace: a complete host on the DDP contract.
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
//! - [`nvme`]: the NVMe and Fabrics commands a host sends, and status codes by name.
//! - [`blocking`]: the blocking driver over `std::net::TcpStream`, and
//!   [`blocking::Controller`] (admin queue bring-up and one I/O queue). Its default backend is
//!   [`NoOffload`]: payload is still read from the socket straight into the command's buffer.
//!
//! The same roles carry the same names in `ulp-iscsi`: `Connection`, `ConnectionConfig`,
//! `Event`, `ConnectionError`, `Violation`, `Data`, `Completion`, `blocking`.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod connection;
pub mod nvme;
pub mod plugin;
pub mod wire;

pub use connection::{
    Completion, Connection, ConnectionConfig, ConnectionError, Data, Event, Negotiated,
    SubmitError, Violation,
};
pub use nvme::Status;
pub use plugin::{ControllerPdu, NVME_TCP, NvmeTcpHost};
pub use ulp_ddp_core::{Digests, NoOffload, SansIo, SgBuffer};
