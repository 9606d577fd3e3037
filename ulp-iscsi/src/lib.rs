//! iSCSI initiator protocol support for the ULP DDP workspace (RFC 7143).
//!
//! This crate currently holds the wire layer only: [`wire`] parses and emits every PDU an
//! initiator sends or receives. It contains no networking code, no clocks and no `unsafe`.
#![forbid(unsafe_code)]

pub mod wire;
