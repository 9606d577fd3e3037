//! Counters, at least as rich as the kernel's `rx_nvmeotcp_*` statistics.

use core::ops::AddAssign;

/// Statistics of a backend or of a receive engine (which adds its backend's).
///
/// The first block mirrors the kernel's ULP DDP counters; the rest say where every payload byte
/// and every digest verdict came from.
///
/// The struct may grow: a backend builds its figures from `Stats::default()` and assigns the
/// fields it counts.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Queues offloaded (kernel: `sk_add`).
    pub queues_added: u64,
    /// Queues the backend declined (kernel: `sk_add_fail`); they run in software.
    pub queues_add_failed: u64,
    /// Queues removed (kernel: `sk_del`).
    pub queues_deleted: u64,
    /// Commands mapped by the backend (kernel: `ddp_setup`).
    pub setups: u64,
    /// Commands the backend refused to map (kernel: `ddp_setup_fail`).
    pub setup_failures: u64,
    /// Commands the engine did not offer to the backend: below the threshold or outside the
    /// limits. Not an error; their data is copied.
    pub setups_declined: u64,
    /// Teardowns started (kernel: `ddp_teardown`).
    pub teardowns: u64,
    /// Teardowns completed, buffers handed back.
    pub teardowns_completed: u64,
    /// PDUs framed.
    pub pdus: u64,
    /// PDUs whose data was placed into a command's buffer.
    pub data_pdus: u64,
    /// Payload bytes a backend placed before the engine saw them (kernel: `bytes`).
    pub bytes_placed: u64,
    /// Payload bytes the CPU copied from a receive buffer into a command's buffer.
    pub bytes_copied: u64,
    /// Payload bytes read from the socket straight into a command's buffer (no intermediate
    /// buffer, no copy beyond the kernel's).
    pub bytes_read_in_place: u64,
    /// Data digests a backend verified (the CPU did not).
    pub digests_offloaded: u64,
    /// Data and header digests the CPU computed.
    pub digests_computed: u64,
    /// Digests that did not match.
    pub digests_failed: u64,
    /// Resync requests a backend raised (kernel: `resync`).
    pub resync_requests: u64,
    /// Resync requests confirmed: a PDU starts at the proposed sequence number.
    pub resync_confirmed: u64,
    /// Resync requests refused: the stream passed the proposed sequence without a PDU starting
    /// there.
    pub resync_refused: u64,
    /// Packets or PDUs dropped on fatal errors (kernel: `drop`).
    pub drops: u64,
    /// Receive errors reported to the caller (hostile or broken input).
    pub errors: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.queues_added += o.queues_added;
        self.queues_add_failed += o.queues_add_failed;
        self.queues_deleted += o.queues_deleted;
        self.setups += o.setups;
        self.setup_failures += o.setup_failures;
        self.setups_declined += o.setups_declined;
        self.teardowns += o.teardowns;
        self.teardowns_completed += o.teardowns_completed;
        self.pdus += o.pdus;
        self.data_pdus += o.data_pdus;
        self.bytes_placed += o.bytes_placed;
        self.bytes_copied += o.bytes_copied;
        self.bytes_read_in_place += o.bytes_read_in_place;
        self.digests_offloaded += o.digests_offloaded;
        self.digests_computed += o.digests_computed;
        self.digests_failed += o.digests_failed;
        self.resync_requests += o.resync_requests;
        self.resync_confirmed += o.resync_confirmed;
        self.resync_refused += o.resync_refused;
        self.drops += o.drops;
        self.errors += o.errors;
    }
}
