//! Held reads and Abort: on request ([`Target::hold_reads`](super::Target::hold_reads)) the
//! target keeps Read commands unanswered, as a controller with a stuck command does; an Abort
//! (admin opcode 08h) of a held read completes it with Command Abort Requested (SCT 0h SC 07h,
//! no DNR) and reports "aborted" (DW0 bit 0 cleared); an Abort of anything else, or of anything
//! while aborts are refused ([`Target::refuse_aborts`](super::Target::refuse_aborts)), reports
//! "not aborted" (DW0 bit 0 set), which the specification allows a controller to say of any
//! command.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ulp_nvme_tcp::nvme::Status;
use ulp_nvme_tcp::wire::Sqe;

use super::conn::Conn;
use super::ctrl::QueueLink;
use super::lock;

/// Command Abort Requested (generic 07h): the status of a command aborted by an Abort; it has
/// no DNR, so a host may issue the command again.
const ABORT_REQUESTED: Status = Status {
    sct: 0,
    sc: 0x07,
    dnr: false,
};

/// A Read the target holds unanswered.
pub(super) struct HeldRead {
    /// The controller of its queue.
    cntlid: Option<u16>,
    cid: u16,
    /// Where its completion goes when it is aborted.
    link: QueueLink,
}

impl Conn<'_> {
    /// A link to this connection's queue (`sqid`), to complete a command from another thread.
    pub(super) fn link(&self, sqid: u16) -> QueueLink {
        QueueLink {
            tx: Arc::clone(&self.tx),
            digests: self.digests,
            sq_head: Arc::clone(&self.sq_head),
            conn: self.conn,
            sqid,
        }
    }

    /// Holds Read `cid` instead of answering it if the target is asked to hold reads (one
    /// fewer to hold then); whether it did.
    pub(super) fn hold_read(&mut self, cid: u16) -> bool {
        let taken = self
            .shared
            .hold_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if !taken {
            return false;
        }
        // Consumed now; its completion, if it is aborted, reports the SQ head as it stands then.
        self.advance_sqhd();
        let held = HeldRead {
            cntlid: self.cntlid,
            cid,
            link: self.link(self.qid.unwrap_or(0)),
        };
        let mut all = lock(&self.shared.held);
        all.push(held);
        self.shared.held_count.store(all.len(), Ordering::SeqCst);
        true
    }

    /// Whether this connection holds Read `cid` (without taking the lock while the target
    /// holds none, so that connections do not contend for it on every command).
    pub(super) fn holds(&self, cid: u16) -> bool {
        self.shared.held_count.load(Ordering::SeqCst) > 0
            && lock(&self.shared.held)
                .iter()
                .any(|h| h.link.conn == self.conn && h.cid == cid)
    }

    /// The connection ended: the reads it held go with it, unanswered.
    pub(super) fn drop_held(&self) {
        let mut all = lock(&self.shared.held);
        all.retain(|h| h.link.conn != self.conn);
        self.shared.held_count.store(all.len(), Ordering::SeqCst);
    }

    /// Abort (CDW10: SQID in bits 15:0, CID in bits 31:16): a held read of this controller is
    /// completed with Command Abort Requested and the Abort reports it aborted (DW0 0); any
    /// other command is not aborted (DW0 1).
    pub(super) fn abort(&mut self, cid: u16, sqe: &[u8; 64]) {
        let cdw10 = Sqe::new_unchecked(&sqe[..]).cdw10();
        let (sqid, target_cid) = (cdw10 as u16, (cdw10 >> 16) as u16);
        self.shared.aborts.fetch_add(1, Ordering::SeqCst);
        let held = if self.shared.refuse_aborts.load(Ordering::SeqCst) {
            None
        } else {
            let mut all = lock(&self.shared.held);
            let held = all
                .iter()
                .position(|h| h.cntlid == self.cntlid && h.link.sqid == sqid && h.cid == target_cid)
                .map(|i| all.swap_remove(i));
            self.shared.held_count.store(all.len(), Ordering::SeqCst);
            held
        };
        let not_aborted = match held {
            Some(h) => {
                h.link.complete(self.shared, h.cid, ABORT_REQUESTED, 0);
                self.shared.aborted.fetch_add(1, Ordering::SeqCst);
                0
            }
            None => 1,
        };
        self.respond(cid, Status::SUCCESS, not_aborted);
    }
}
