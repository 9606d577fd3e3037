//! # ulp-backend-sw: the software DDP backend
//!
//! The backend every machine has, the fallback for every byte a device does not place, and the
//! reference the other backends are proven equivalent to.
//!
//! - [`SwBackend`] implements [`DdpBackend`]: it maps every command its [`Limits`] admit (by
//!   default, all of them), completes teardowns at once (through the same polled completion an
//!   asynchronous device uses), and places payload on the CPU with a fused copy and CRC32C
//!   ([`ulp_ddp_core::digest::copy_with_crc`]: each source byte is read from memory once), or
//!   with streaming stores that bypass the cache ([`SwBackend::streaming`], [`stream`]), as a
//!   DMA engine writes: faster into cold command buffers.
//! - The reader path ([`SocketReader`]: payload straight from the socket into the registered
//!   buffer) works with every backend and lives in the core
//!   ([`ulp_ddp_core::reader`]); it is re-exported here for code written against earlier
//!   versions.
//!
//! ```
//! use ulp_backend_sw::{DdpBackend, ProtocolId, SwBackend};
//!
//! let backend = SwBackend::new();
//! let limits = backend.limits(ProtocolId("any")).unwrap();
//! assert_eq!(limits.io_threshold, 0);
//! ```
#![deny(unsafe_code)]

mod backend;
#[allow(unsafe_code)] // the streaming copy's SSE2 stores; see the module's SAFETY comments
pub mod stream;

pub use backend::{Cached, Mover, Streaming, SwBackend};
#[doc(no_inline)]
pub use ulp_ddp_core::reader::{RecvError, SocketReader};
#[doc(no_inline)]
pub use ulp_ddp_core::{DdpBackend, Limits, ProtocolId};
