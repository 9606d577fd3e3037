//! [`Options`]: how to reach, set up and recover a controller; the blocking and the tokio
//! drivers and the sans-IO [`bringup`](crate::bringup) all take it.

use std::time::Duration;

use crate::connection::{DEFAULT_ADMIN_TIMEOUT, DEFAULT_IO_TIMEOUT};
use crate::wire::Digests;

/// How to reach and set up a controller, and how to recover it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN.
    pub hostnqn: String,
    /// Namespace for I/O.
    pub nsid: u32,
    /// Digests on both queues.
    pub digests: Digests,
    /// I/O queue depth.
    pub queue_depth: u16,
    /// Keep-alive timeout given to Connect (zero: none). Keep Alive goes out every half of it,
    /// from the admin queue's timer; one unanswered for the KATO resets the controller.
    /// Default 5 s, as Linux (`NVME_DEFAULT_KATO`).
    pub kato: Duration,
    /// How long the controller may stay silent during bring-up (ICResp, Connect, Identify)
    /// and on the admin queue, and how long a clean shutdown may take. CSTS.RDY after CC.EN
    /// is waited for as long as the controller's CAP.TO says, as Linux does.
    pub timeout: Duration,
    /// How long an I/O command may stay outstanding before it is aborted (Linux's
    /// `io_timeout`, 30 s).
    pub io_timeout: Duration,
    /// How long an admin command may stay outstanding (Linux's `admin_timeout`, 60 s).
    pub admin_timeout: Duration,
    /// Wait between losing the controller and each reconnect attempt (Linux's
    /// `reconnect_delay`, 10 s).
    pub reconnect_delay: Duration,
    /// Give up reconnecting, and fail every outstanding command, this long after the
    /// controller was lost (Linux's `ctrl_loss_tmo`, 600 s).
    pub ctrl_loss_tmo: Duration,
    /// Most times a command is issued again after a retryable failure (Linux's
    /// `nvme_core.max_retries`, 5).
    pub max_retries: u8,
    /// I/O queues to create (nvme-cli's `nr-io-queues`), each its own TCP connection with
    /// its own receive engine and DDP queue; the controller may grant fewer (Set Features
    /// Number of Queues). Commands go to the queue with the most free CIDs. Default 1.
    pub queues: u16,
    /// NVMe TP 8011's secure channel: TLS 1.3 with this PSK on the admin queue and on every I/O
    /// queue (each its own handshake, as Linux; every reconnect handshakes again), ICReq inside
    /// it. Derive it from a configured key with [`crate::psk::ConfiguredPsk::derive`]. Needs the
    /// `tls` feature (and `tokio` for the tokio driver). Default `None` (plaintext).
    pub tls: Option<crate::psk::TlsPsk>,
}

impl Options {
    /// Options for `subnqn`: namespace 1, digests off, depth 32, Linux's defaults for time
    /// (KATO 5 s, io_timeout 30 s, admin_timeout 60 s, reconnect_delay 10 s, ctrl_loss_tmo
    /// 600 s, 5 retries) and 10 s for bring-up.
    pub fn new(subnqn: &str) -> Self {
        Self {
            subnqn: subnqn.to_string(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:0c0f7e1d-ulp-ddp-host".to_string(),
            nsid: 1,
            digests: Digests::NONE,
            queue_depth: 32,
            kato: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            io_timeout: DEFAULT_IO_TIMEOUT,
            admin_timeout: DEFAULT_ADMIN_TIMEOUT,
            reconnect_delay: Duration::from_secs(10),
            ctrl_loss_tmo: Duration::from_secs(600),
            max_retries: 5,
            queues: 1,
            tls: None,
        }
    }
}
