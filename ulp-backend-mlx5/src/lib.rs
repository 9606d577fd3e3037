//! # ulp-backend-mlx5: the ConnectX-7 NVMe/TCP receive offload
//!
//! The driver logic of the kernel's `mlx5e_nvmeotcp` as a [`DdpBackend`](ulp_ddp_core::DdpBackend)
//! ([`Mlx5Backend`]), written against a [`Device`] trait (the work requests and completions the
//! driver exchanges with the hardware), and a functional [`Model`] of the device below TCP, so
//! that the whole receive path runs without the hardware:
//!
//! - [`device`]: the hardware interface: queue resources (tag buffer table, per-CCID KLM memory
//!   keys, TIR, steering rule), static and progress parameters, KLM and invalidation UMRs, and
//!   the receive completions with their NVMe/TCP fields (`cclen`, `hlen`, `ccoff`, `ccid`, the
//!   zero-copy, digest and resync bits).
//! - [`Mlx5Backend`]: queue contexts, per-command mappings with a generation counter, the
//!   resync state machine, asynchronous teardown completions and the kernel's
//!   `rx_nvmeotcp_*` counters ([`Mlx5Stats`]). It offloads NVMe/TCP only: for any other
//!   protocol (iSCSI) [`limits`](ulp_ddp_core::DdpBackend::limits) is `None` and the engine
//!   runs the queue in software.
//! - [`sgl`]: the scatter-gather shape check `setup` applies against the MTU
//!   ([`validate_sgl`]): buffers whose entries are too small for a packet's fragments are
//!   declined, and the command is copied.
//! - [`Model`]: TCP segments in any order; PDU tracking, placement and per-segment digest
//!   verdicts while in order; searching, resync requests and resumption after confirmation
//!   otherwise.
//! - [`Reassembly`]: TCP reassembly between the device and the engine.
//! - [`Nic`]: all of it wired to a receive engine; `deliver(seq, segment)`.
//!
//! ```
//! use ulp_backend_mlx5::{Model, Nic};
//! use ulp_ddp_core::{EngineOptions, Event, QueueConfig, QueueId, SetupOutcome, SgBuffer, Tag, TcpSeq};
//! use ulp_nvme_tcp::wire::{C2hDataRepr, Digests, Pda};
//! use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};
//!
//! let config = QueueConfig::new(NVME_TCP, QueueId(1)).with_rx_seq(TcpSeq(1000));
//! let mut nic = Nic::new(NvmeTcpHost::new(), Model::new(), config, EngineOptions::default());
//! let setup = nic.engine_mut().setup(Tag(3), SgBuffer::zeroed(64 * 1024)).unwrap();
//! assert_eq!(setup, SetupOutcome::Offloaded);
//!
//! // One C2HData PDU carrying 64 KiB for CCID 3, sent as 1460-byte segments.
//! let data: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
//! let repr = C2hDataRepr { cccid: 3, datao: 0, datal: data.len() as u32, last_pdu: true, success: false };
//! let mut pdu = Vec::new();
//! repr.emit(&mut pdu, Digests::NONE, Pda::ZERO, &data).unwrap();
//! for (i, segment) in pdu.chunks(1460).enumerate() {
//!     nic.deliver(TcpSeq(1000 + (i * 1460) as u32), segment).unwrap();
//! }
//! assert!(matches!(nic.engine_mut().poll_event(), Some(Event::Data { len: 65536, .. })));
//! assert_eq!(nic.engine().stats().bytes_copied, 0);
//! assert_eq!(nic.counters().bytes, 65536);
//! ```
#![forbid(unsafe_code)]

pub mod device;
mod driver;
mod model;
mod nic;
mod reasm;
pub mod sgl;

pub use device::Device;
pub use driver::{
    IO_THRESHOLD, MAX_IO_BYTES, MAX_QUEUES, MAX_SGL, Mlx5Backend, Mlx5Stats, Run, RxOutcome,
    RxSegment,
};
pub use model::{DmaWrite, Model, ModelConfig, ModelStats};
pub use nic::{Nic, NicStats};
pub use reasm::Reassembly;
pub use sgl::validate_sgl;
