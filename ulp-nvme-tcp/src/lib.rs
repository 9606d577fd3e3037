//! NVMe/TCP for the ULP DDP workspace: a complete host on the DDP contract.
//!
//! - [`wire`]: typed views over NVMe/TCP PDU bytes, validated `Repr` values that parse and emit
//!   them, stream framing helpers and the CRC32C header and data digests.
//! - [`NvmeTcpHost`]: the receive engine's protocol plugin (C2HData placed by CCCID and DATAO).
//! - [`HostQueue`]: the sans-IO host side of one queue (ICReq negotiation, commands, R2T and
//!   H2CData, C2HData through the engine, completions after teardown, hostile-peer handling).
//! - [`nvme`]: the NVMe and Fabrics commands a host sends.
//! - [`driver`]: a thin blocking driver over `std::net::TcpStream`, and [`driver::Controller`]
//!   (admin queue bring-up and one I/O queue).
//! - `target` (feature `target`): a strict embedded NVMe/TCP target with a RAM namespace, for
//!   tests, the CLI and benches.
#![forbid(unsafe_code)]

pub mod driver;
pub mod host;
pub mod nvme;
pub mod plugin;
#[cfg(feature = "target")]
pub mod target;
pub mod wire;

pub use host::{
    Completion, Data, HostConfig, HostError, HostEvent, HostQueue, Negotiated, SubmitError,
    Transmit, Violation,
};
pub use nvme::Status;
pub use plugin::{ControllerPdu, NVME_TCP, NvmeTcpHost};
