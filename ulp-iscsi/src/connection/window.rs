//! Sequencing: command identifiers, the CmdSN window (RFC 7143 §4.2.2.1), StatSN, and the
//! transmit queue every PDU goes through.

use ulp_ddp_core::DdpBackend;

use super::{CommandId, Connection, ConnectionError, TX_HEADER, TxPayload, TxPdu, Violation};
use crate::serial;
use crate::wire::{self, Digests, EmittedHeader, Opcode};

impl<B: DdpBackend> Connection<B> {
    pub(super) fn new_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Whether the target's window admits the next CmdSN.
    pub(super) fn window_open(&self) -> bool {
        serial::le(self.cmd_sn, self.max_cmd_sn)
    }

    /// Takes ExpCmdSN and MaxCmdSN from a target PDU, as RFC 7143 §4.2.2.1 says: when the
    /// PDU's MaxCmdSN is below its ExpCmdSN - 1 (serial arithmetic) both are ignored;
    /// otherwise each replaces the local value only when serially greater (MaxCmdSN =
    /// ExpCmdSN - 1 is a valid, closed window). Every PDU carrying them goes through here,
    /// Data-In without status and Reject included.
    pub(super) fn update_window(&mut self, exp: u32, max: u32) {
        if serial::lt(max, exp.wrapping_sub(1)) {
            return;
        }
        if serial::gt(exp, self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if serial::gt(max, self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    /// Accepts the StatSN of a status-carrying PDU; a StatSN that went backwards fails the
    /// connection.
    pub(super) fn take_stat_sn(&mut self, opcode: Opcode, sn: u32) -> bool {
        if serial::lt(sn, self.exp_stat_sn) {
            let expected = self.exp_stat_sn;
            self.fail(ConnectionError::Protocol(Violation::StatSnBackwards {
                opcode,
                expected,
                received: sn,
            }));
            return false;
        }
        self.exp_stat_sn = sn.wrapping_add(1);
        true
    }

    /// Queues one PDU: `emit` writes its header for the data segment `payload` names (its
    /// length and data digest computed over the payload's pieces).
    pub(super) fn push_pdu(
        &mut self,
        opcode: Opcode,
        emit: impl FnOnce(&mut [u8], Digests, &[&[u8]]) -> wire::Result<EmittedHeader>,
        payload: TxPayload,
    ) -> Result<(), ConnectionError> {
        let mut header = [0u8; TX_HEADER];
        let digests = if opcode == Opcode::LoginRequest {
            Digests::NONE
        } else {
            self.digests
        };
        let emitted = match &payload {
            TxPayload::None => emit(&mut header, digests, &[]),
            TxPayload::Owned(data) => emit(&mut header, digests, &[&data[..]]),
            TxPayload::Write { tag, offset, len } => {
                let slices = self
                    .write_of(*tag)
                    .and_then(|w| w.slices(*offset, *len).ok())
                    .unwrap_or_default();
                emit(&mut header, digests, &slices)
            }
        };
        let h = emitted.map_err(|error| ConnectionError::Encode { opcode, error })?;
        let mut trailer = [0u8; 7];
        let mut trailer_len = h.pad_len;
        if let Some(d) = h.data_digest {
            trailer[h.pad_len..h.pad_len + 4].copy_from_slice(&d);
            trailer_len += 4;
        }
        self.tx.push_back(TxPdu {
            header,
            // Both fit: a header of at most 52 bytes, a pad of at most 3 and a digest.
            header_len: h.header_len as u8,
            payload,
            trailer,
            trailer_len: trailer_len as u8,
        });
        Ok(())
    }
}
