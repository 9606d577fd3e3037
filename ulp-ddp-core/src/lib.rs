//! # ulp-ddp-core: direct data placement for request-response protocols over TCP
//!
//! Storage protocols such as NVMe/TCP and iSCSI carry read data in PDUs inside a TCP byte
//! stream. This crate is the contract that lets that data land straight in the buffer the
//! caller registered for the command, with its CRC32C data digest verified once, whether a NIC
//! places it (an offload backend), or the CPU does (the software backend, the fallback for
//! every byte a device did not place). It is the kernel's ULP DDP layer ("nvme-tcp receive
//! offloads") made protocol-agnostic, backend-pluggable and usable from userspace.
//!
//! It names no protocol. Everything but two modules is sans-IO (no sockets, clocks or
//! threads): [`reader`] reads from any `std::io::Read`, and [`blocking`] is the one loop that
//! drives a sans-IO connection over a blocking socket, reading the clock for its timers.
//!
//! ## Layers
//!
//! - [`Protocol`]: a plugin that frames one protocol's PDUs: from a header's first bytes, its
//!   length and whether a digest ends it ([`HeaderFrame`]); from the whole header, once, its
//!   typed form ([`Protocol::Header`], handed to the state machine with the PDU's event) and a
//!   [`PduLayout`] saying where data starts, how long it is, its padding, its digest, and
//!   whether it goes to a command's buffer ([`Placement`]: tag and offset).
//! - [`DdpBackend`]: a device (or the CPU) that maps tags to buffers: [`Limits`], queue
//!   add/delete, per-command setup, teardown that completes through a polled event, resync
//!   request and response, [`Stats`]. [`NoOffload`] is the backend of a machine without one.
//! - [`Engine`]: one per connection. It owns every registered buffer ([`SgBuffer`]) from
//!   [`Engine::setup`] until [`Event::Released`], tracks PDU boundaries through the plugin
//!   however the stream is cut, checks each header digest once, places what the backend did not
//!   place, verifies what it did not verify, answers resync requests, and reports [`Event`]s.
//! - [`reader::SocketReader`]: the reader path, for any backend: payload read from a socket
//!   straight into the command's buffer.
//! - The sans-IO vocabulary both protocol crates share: the [`SansIo`] verbs (bytes in,
//!   transmits out, `handle_timeout(now)` and `poll_timeout()`), [`Transmit`] (bytes out,
//!   payload borrowed), [`Digests`], [`timer::Timer`]; and [`blocking::Driver`], the one loop
//!   both blocking drivers run.
//! - `testkit` (feature `testkit`): the conformance kit every backend runs, from one `#[test]`
//!   calling `testkit::run_all::<MyBackend, MyProtocol>(MyBackend::new)` (its module docs show
//!   it, compiled and run).
//!
//! ## Example
//!
//! A toy protocol whose PDUs are an 8-byte header (tag, data length, little-endian) followed by
//! data, received in pieces cut anywhere:
//!
//! ```
//! use ulp_ddp_core::{
//!     Engine, EngineOptions, Event, HeaderError, HeaderFrame, NoOffload, Parsed, PduLayout,
//!     Piece, Placement, Protocol, ProtocolId, QueueConfig, QueueId, SgBuffer, Tag,
//! };
//!
//! struct Toy;
//!
//! impl Protocol for Toy {
//!     type Header = (u32, u32);
//!     type Error = HeaderError;
//!     fn id(&self) -> ProtocolId { ProtocolId("toy") }
//!     fn prefix_len(&self) -> usize { 8 }
//!     fn max_header_len(&self) -> usize { 8 }
//!     fn frame(&mut self, _prefix: &[u8]) -> Result<HeaderFrame, HeaderError> {
//!         Ok(HeaderFrame { len: 8, digest: false })
//!     }
//!     fn parse(&mut self, h: &[u8]) -> Result<Parsed<(u32, u32)>, HeaderError> {
//!         let tag = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
//!         let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
//!         let layout = PduLayout {
//!             data_len: len,
//!             placement: Some(Placement { tag: Tag(tag), offset: 0 }),
//!             ..PduLayout::header_only(8)
//!         };
//!         Ok(Parsed { layout, header: (tag, len) })
//!     }
//! }
//!
//! let config = QueueConfig::new(ProtocolId("toy"), QueueId(1));
//! let mut engine = Engine::new(Toy, NoOffload, config, EngineOptions::default());
//! engine.setup(Tag(5), SgBuffer::zeroed(4)).unwrap();
//!
//! let stream = [5, 0, 0, 0, 4, 0, 0, 0, b'd', b'a', b't', b'a'];
//! for piece in stream.chunks(3) {
//!     engine.receive(Piece::bytes(piece)).unwrap();
//! }
//! let Some(Event::Data { header, tag, len, .. }) = engine.poll_event() else { panic!() };
//! assert_eq!((header, tag, len), ((5, 4), Tag(5), 4));
//!
//! engine.teardown(Tag(5)).unwrap();
//! let Some(Event::Released { buffer, .. }) = engine.poll_event() else { panic!() };
//! assert_eq!(buffer.into_vec(), b"data");
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod blocking;
pub mod buffer;
mod codes;
pub mod config;
pub mod digest;
pub mod engine;
pub mod error;
pub mod limits;
pub mod protocol;
mod ranges;
pub mod reader;
pub mod sansio;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timer;
pub mod transmit;
pub mod types;

pub use backend::{BackendEvent, DdpBackend, DdpIo, NoOffload, Shared};
pub use buffer::{Data, OutOfRange, SgBuffer, Slices, SlicesIter};
pub use config::QueueConfig;
pub use digest::Digests;
pub use engine::{DigestStatus, Engine, EngineOptions, Event, Piece, ReadTarget, SetupOutcome};
pub use error::{BackendError, DataError, Error};
pub use limits::{Decline, DigestOffload, Limits, TagRange};
pub use protocol::{
    HeaderError, HeaderFrame, LayoutError, MAX_PAD, Parsed, PduLayout, Placement, Protocol,
};
pub use reader::{RecvError, SocketReader};
pub use sansio::SansIo;
pub use stats::Stats;
pub use transmit::{BufferTooSmall, Transmit, TransmitWriter};
pub use types::{ProtocolId, QueueId, Tag, TcpSeq};
