//! Controllers: what the target keeps per association (from the admin Connect on): its kind
//! (I/O or discovery), CC, and its asynchronous events: the Asynchronous Event Requests it
//! holds, the events waiting for one, the notices masked until their log page is read, and
//! the admin queue's link to send a completion from another thread.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use ulp_nvme_tcp::nvme::{self, AsyncEvent, Status};
use ulp_nvme_tcp::wire::{CapsuleRespRepr, Cqe, Digests};

use super::writer::{Batch, Out, Tx};
use super::{CapturedPdu, Shared, lock};

/// AERL announced in Identify Controller: AERL + 1 (4, as Linux's target) requests may be
/// outstanding.
pub(super) const AERL: u8 = 3;

/// What the target keeps about one controller.
pub(super) struct Ctrl {
    /// A discovery controller (its admin Connect named the discovery NQN).
    pub(super) discovery: bool,
    /// Controller Configuration.
    pub(super) cc: u32,
    /// Asynchronous Event Configuration (Set Features 0Bh).
    pub(super) aen_enabled: u32,
    /// Notices reported and not re-armed yet (their AEC bits): cleared when the host reads
    /// their log page without RAE.
    pub(super) aen_masked: u32,
    /// Outstanding Asynchronous Event Requests, by CID, oldest first.
    pub(super) aers: VecDeque<u16>,
    /// Events that occurred while no request was outstanding.
    pub(super) events: VecDeque<AsyncEvent>,
    /// Namespaces changed since the host last read the Changed Namespace List.
    pub(super) changed_ns: Vec<u32>,
    /// The admin queue, while its connection lasts.
    pub(super) link: Option<QueueLink>,
}

/// How to send a completion on a queue from outside its reader thread: an Asynchronous Event
/// Request's on the admin queue, an aborted read's on its I/O queue.
pub(super) struct QueueLink {
    pub(super) tx: Arc<Tx>,
    pub(super) digests: Digests,
    pub(super) sq_head: Arc<AtomicU16>,
    pub(super) conn: u32,
    /// The queue's id (SQID in the completion).
    pub(super) sqid: u16,
}

impl Ctrl {
    pub(super) fn new(discovery: bool, link: QueueLink) -> Self {
        Self {
            discovery,
            cc: 0,
            aen_enabled: Self::supported_aen(discovery),
            aen_masked: 0,
            aers: VecDeque::new(),
            events: VecDeque::new(),
            changed_ns: Vec::new(),
            link: Some(link),
        }
    }

    /// The optional events this kind of controller reports (Identify OAES, and the AEC bits it
    /// accepts): Namespace Attribute Notices on an I/O controller, none on a discovery
    /// controller (its log never changes). Enabled from the start, as on Linux's target.
    pub(super) const fn supported_aen(discovery: bool) -> u32 {
        if discovery {
            0
        } else {
            nvme::AEC_NAMESPACE_ATTRIBUTE
        }
    }

    /// Reports `event` (AEC bit `bit`) unless it is disabled or masked: completes the oldest
    /// outstanding request, or keeps the event for the next one. Whether it was reported.
    pub(super) fn raise(&mut self, shared: &Shared, bit: u32, event: AsyncEvent) -> bool {
        if self.aen_enabled & bit == 0 || self.aen_masked & bit != 0 {
            return false;
        }
        self.aen_masked |= bit;
        self.events.push_back(event);
        self.deliver(shared);
        true
    }

    /// Pairs waiting events with outstanding requests and sends their completions.
    fn deliver(&mut self, shared: &Shared) {
        let Some(link) = &self.link else {
            return;
        };
        while !self.events.is_empty() && !self.aers.is_empty() {
            if let (Some(cid), Some(event)) = (self.aers.pop_front(), self.events.pop_front()) {
                link.complete(shared, cid, Status::SUCCESS, event.to_dw0());
            }
        }
    }
}

impl QueueLink {
    /// Queues the completion of `cid` with `status` and `dw0` for the connection's writer
    /// thread (the SQ entry was consumed when the command came in: SQHD as it stands).
    pub(super) fn complete(&self, shared: &Shared, cid: u16, status: Status, dw0: u32) {
        let cqe = Cqe {
            dw0,
            dw1: 0,
            sqhd: self.sq_head.load(Ordering::SeqCst),
            sqid: self.sqid,
            cid,
            status: status.to_cqe(),
        };
        let mut pdu = Vec::new();
        if (CapsuleRespRepr { cqe })
            .emit(&mut pdu, self.digests)
            .is_err()
        {
            return;
        }
        if shared.config.capture {
            lock(&shared.capture).push(CapturedPdu {
                conn: self.conn,
                from_host: false,
                bytes: pdu.clone(),
            });
        }
        let mut st = lock(&self.tx.state);
        if st.failed || st.closed {
            return;
        }
        st.queue.push_back(Batch {
            outs: vec![Out::Pdu(pdu)],
            sent: 0,
        });
        drop(st);
        self.tx.wake.notify_all();
    }
}

/// The Discovery Log Page of the target: one entry, its own NVM subsystem at the listening
/// address (TCP, port 1, dynamic controller model, ASQSZ 32, no security), generation 0 (the
/// log never changes). Text fields as the specification pads them: TRSVCID and TRADDR (ASCII)
/// with spaces, SUBNQN with NULs.
pub(super) fn discovery_log(addr: SocketAddr, subnqn: &str) -> Vec<u8> {
    let mut d = vec![0u8; 2048];
    d[8..16].copy_from_slice(&1u64.to_le_bytes());
    let e = &mut d[1024..2048];
    e[0] = 3; // TRTYPE: TCP
    e[1] = if addr.is_ipv4() { 1 } else { 2 }; // ADRFAM: IPv4 / IPv6
    e[2] = 2; // SUBTYPE: NVM subsystem
    e[3] = 0; // TREQ: secure channel not specified, SQ flow control always on
    e[4..6].copy_from_slice(&1u16.to_le_bytes()); // PORTID
    e[6..8].copy_from_slice(&0xFFFFu16.to_le_bytes()); // CNTLID: dynamic
    e[8..10].copy_from_slice(&32u16.to_le_bytes()); // ASQSZ
    let port = addr.port().to_string();
    e[32..64].fill(b' ');
    e[32..32 + port.len()].copy_from_slice(port.as_bytes());
    let nqn = subnqn.as_bytes();
    let n = nqn.len().min(255);
    e[256..256 + n].copy_from_slice(&nqn[..n]);
    let ip = addr.ip().to_string();
    e[512..768].fill(b' ');
    e[512..512 + ip.len()].copy_from_slice(ip.as_bytes());
    // TSAS: SECTYPE 0, no security.
    d
}

/// The Changed Namespace List (4096 bytes): the changed NSIDs, or FFFFFFFFh first when more
/// than 1024 changed.
pub(super) fn changed_ns_list(nsids: &[u32]) -> Vec<u8> {
    let mut d = vec![0u8; 4096];
    if nsids.len() > 1024 {
        d[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    } else {
        for (i, ns) in nsids.iter().enumerate() {
            d[4 * i..4 * i + 4].copy_from_slice(&ns.to_le_bytes());
        }
    }
    d
}
