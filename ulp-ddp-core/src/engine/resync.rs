//! Answers to a device's resync requests: does a PDU start at this sequence number?

use std::collections::VecDeque;

use crate::types::TcpSeq;

/// How many recent PDU starts are remembered to answer late resync requests.
const RECENT_STARTS: usize = 32;

/// The engine's side of resync: the question a device asked and not yet answered, and the
/// stream positions where recent PDUs started.
#[derive(Debug, Default)]
pub(super) struct Resync {
    pending: Option<TcpSeq>,
    recent: VecDeque<TcpSeq>,
}

impl Resync {
    /// Forgets everything (the queue was offered to the backend again).
    pub(super) fn clear(&mut self) {
        self.pending = None;
        self.recent.clear();
    }

    /// A device asks whether a PDU starts at `seq`; the stream's next byte is `here`, at a PDU
    /// boundary or not. Returns the answer if it is known now; otherwise it is given when the
    /// stream reaches `seq` ([`pdu_start`](Self::pdu_start)).
    pub(super) fn request(&mut self, seq: TcpSeq, here: TcpSeq, at_boundary: bool) -> Option<bool> {
        let ahead = here.distance_to(seq);
        if ahead > 0 {
            // Not reached yet: answer when the stream gets there.
            self.pending = Some(seq);
            None
        } else if ahead == 0 {
            // The next byte starts a PDU exactly when the stream is between PDUs.
            self.pending = None;
            Some(at_boundary)
        } else {
            // Already passed: answer from memory of recent PDU starts.
            self.pending = None;
            Some(self.recent.contains(&seq))
        }
    }

    /// A PDU starts at `here`. Returns the pending question this settles, with its answer.
    pub(super) fn pdu_start(&mut self, here: TcpSeq) -> Option<(TcpSeq, bool)> {
        if self.recent.len() == RECENT_STARTS {
            self.recent.pop_front();
        }
        self.recent.push_back(here);
        let seq = self.pending?;
        let answer = match here.distance_to(seq) {
            0 => true,
            d if d < 0 => false,
            _ => return None,
        };
        self.pending = None;
        Some((seq, answer))
    }
}
