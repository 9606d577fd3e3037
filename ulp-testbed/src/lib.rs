//! # ulp-testbed: what the tests and the `ulp-ddp` tool run against
//!
//! Nothing here is a library for users: no library crate of the workspace depends on it (its
//! dev-dependencies and the command-line tool do). It holds:
//!
//! - [`nvme::Target`]: a strict embedded NVMe/TCP target with a RAM namespace;
//! - [`iscsi::Target`]: a strict embedded iSCSI target with a RAM LUN, which can also misbehave
//!   on purpose ([`iscsi::Misbehave`], the hostile-peer fixtures);
//! - [`pcap`]: the pcap writer, so that Wireshark checks captured traffic;
//! - [`toy`]: the toy protocol the core's tests, the conformance runs and the demo use;
//! - [`peers`]: starting and checking real peers (tgtd, tshark) on 127.0.0.1;
//! - [`scripted::ScriptedPeer`]: a peer that follows a script (silent, or stops reading);
//! - [`proxy::Proxy`]: a TCP proxy that cuts or stalls connections on command (recovery tests);
//! - [`vm`]: the Linux target VM (nvmet-tcp and LIO) for real-peer tests.
//!
//! ```
//! use ulp_testbed::nvme::{Target, TargetConfig};
//!
//! let target = Target::start(TargetConfig { size: 1 << 20, ..TargetConfig::default() })?;
//! assert!(target.addr().ip().is_loopback());
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod iscsi;
pub mod nvme;
pub mod pcap;
pub mod peers;
pub mod proxy;
pub mod scripted;
pub mod toy;
pub mod vm;
