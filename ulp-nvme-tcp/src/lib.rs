//! NVMe/TCP for the ULP DDP workspace.
//!
//! This crate is sans-IO: it owns no sockets, threads or clocks. Today it holds the wire layer
//! ([`wire`]) and the receive engine's protocol plugin ([`NvmeTcpHost`]): typed views over NVMe/TCP PDU bytes, validated `Repr` values that parse and emit
//! them, stream framing helpers and the CRC32C header and data digests.
#![forbid(unsafe_code)]

pub mod plugin;
pub mod wire;

pub use plugin::{NVME_TCP, NvmeTcpHost};
