//! Admin and Fabrics commands on a connection: Connect (to the target's subsystem or the
//! discovery subsystem), Property Get/Set, Identify, Get Log Page (Discovery, Changed Namespace
//! List), Set Features (Asynchronous Event Configuration), Asynchronous Event Request, and the
//! SGL check of admin reads (Abort is in `abort.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ulp_nvme_tcp::nvme::{self, Status};
use ulp_nvme_tcp::wire::Sqe;
use ulp_nvme_tcp::wire::capsule_cmd::SGL_ID_TRANSPORT_DATA_BLOCK;

use super::conn::{Conn, Fatal};
use super::ctrl::{self, AERL, Ctrl};
use super::lock;
use super::namespace::Piece;

/// Admin queue entries (ASQSZ in the discovery log): SQSIZE at most 31.
const ADMIN_SQ_ENTRIES: u16 = 32;
/// Connect response DW0 for an invalid parameter: IATTR 0 (in the SQE), IPO the QID field.
const IPO_SQE_QID: u64 = 42;
/// Connect response DW0 for an invalid parameter: IATTR 1 (in the data), IPO SUBNQN.
const IPO_DATA_SUBNQN: u64 = (1 << 16) | 256;
/// CC.SHN (bits 15:14): a shutdown notification.
const CC_SHN: u32 = 0b11 << 14;
/// Largest log page read the target answers.
const MAX_LOG_READ: u64 = 1 << 20;

fn connect_invalid() -> Status {
    Status {
        sct: 1,
        sc: nvme::SC_CONNECT_INVALID_PARAM as u8,
        dnr: true,
    }
}

fn command_specific(sc: u16) -> Status {
    Status {
        sct: 1,
        sc: sc as u8,
        dnr: true,
    }
}

impl Conn<'_> {
    pub(super) fn expect_read(
        &self,
        cid: u16,
        sgl: &ulp_nvme_tcp::wire::SglDescriptor,
        len: usize,
    ) -> Result<(), Fatal> {
        if len > 0 && (sgl.id != SGL_ID_TRANSPORT_DATA_BLOCK || (sgl.length as usize) < len) {
            return Err(Fatal(format!(
                "cid {cid}: SGL {sgl:?} cannot take {len} bytes"
            )));
        }
        Ok(())
    }

    pub(super) fn connect(&mut self, cid: u16, sqe: &[u8; 64], data: &[u8]) -> Result<(), Fatal> {
        let qid = u16::from_le_bytes([sqe[42], sqe[43]]);
        let recfmt = u16::from_le_bytes([sqe[40], sqe[41]]);
        let sqsize = u16::from_le_bytes([sqe[44], sqe[45]]);
        if data.len() != nvme::CONNECT_DATA_LEN {
            return Err(Fatal(format!("Connect with {} data bytes", data.len())));
        }
        if recfmt != 0 || sqsize == 0 || (qid == 0 && sqsize >= ADMIN_SQ_ENTRIES) {
            self.respond(cid, connect_invalid(), 0);
            return Err(Fatal(format!(
                "Connect RECFMT {recfmt} SQSIZE {sqsize} (queue {qid})"
            )));
        }
        let cntlid = u16::from_le_bytes([data[16], data[17]]);
        let subnqn = String::from_utf8_lossy(&data[256..512])
            .trim_end_matches('\0')
            .to_string();
        let discovery = subnqn == nvme::DISCOVERY_NQN;
        if !discovery && subnqn != self.shared.config.subnqn {
            self.respond(cid, connect_invalid(), IPO_DATA_SUBNQN);
            return Err(Fatal(format!("Connect to unknown subsystem {subnqn:?}")));
        }
        if discovery && qid != 0 {
            // A discovery controller has no I/O queues: refused (as Linux's target does),
            // pointing at QID; the host may go on with another Connect.
            self.respond(cid, connect_invalid(), IPO_SQE_QID);
            return Ok(());
        }
        let result = if qid == 0 {
            if cntlid != 0xFFFF {
                return Err(Fatal(format!("admin Connect with CNTLID {cntlid:#x}")));
            }
            let id = self.shared.next_cntlid.fetch_add(1, Ordering::SeqCst);
            let link = self.link(0);
            lock(&self.shared.ctrls).insert(id, Ctrl::new(discovery, link));
            self.cntlid = Some(id);
            u64::from(id)
        } else {
            match lock(&self.shared.ctrls).get(&cntlid) {
                None => {
                    return Err(Fatal(format!("I/O Connect with unknown CNTLID {cntlid}")));
                }
                Some(c) if c.discovery => {
                    return Err(Fatal(format!(
                        "I/O Connect with CNTLID {cntlid}, a discovery controller"
                    )));
                }
                Some(c) if c.cc & 1 == 0 => {
                    return Err(Fatal("I/O Connect before CC.EN".into()));
                }
                Some(_) => {}
            }
            if sqsize > 1023 {
                return Err(Fatal(format!("I/O SQSIZE {sqsize} above MQES")));
            }
            self.cntlid = Some(cntlid);
            u64::from(cntlid)
        };
        self.qid = Some(qid);
        self.sqsize = sqsize + 1;
        self.respond(cid, Status::SUCCESS, result);
        Ok(())
    }

    /// This queue's controller's state, under the lock (`None` before Connect).
    fn with_ctrl<R>(&self, f: impl FnOnce(&mut Ctrl) -> R) -> Option<R> {
        let id = self.cntlid?;
        lock(&self.shared.ctrls).get_mut(&id).map(f)
    }

    /// Whether `cid` is an Asynchronous Event Request this admin queue holds.
    pub(super) fn aer_outstanding(&self, cid: u16) -> bool {
        self.qid == Some(0) && self.with_ctrl(|c| c.aers.contains(&cid)) == Some(true)
    }

    /// The admin queue's connection ended: its requests go with it.
    pub(super) fn detach(&self) {
        if self.qid == Some(0) {
            self.with_ctrl(|c| {
                c.link = None;
                c.aers.clear();
            });
        }
    }

    pub(super) fn fabrics(&mut self, cid: u16, sqe: &[u8; 64]) -> Result<(), Fatal> {
        let ofst = u32::from_le_bytes([sqe[44], sqe[45], sqe[46], sqe[47]]);
        match sqe[4] {
            nvme::FCTYPE_PROPERTY_GET if self.qid == Some(0) => {
                let cc = self.with_ctrl(|c| c.cc).unwrap_or(0);
                let value: u64 = match ofst {
                    nvme::REG_CAP => 1023 | (1 << 16) | (15 << 24) | (1 << 37),
                    nvme::REG_VS => 0x0001_0300,
                    nvme::REG_CC => u64::from(cc),
                    // RDY as CC.EN; SHST complete once CC.SHN asks for a shutdown.
                    nvme::REG_CSTS if cc & CC_SHN != 0 => {
                        u64::from(cc & 1) | nvme::CSTS_SHST_COMPLETE
                    }
                    nvme::REG_CSTS => u64::from(cc & 1),
                    _ => {
                        self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
                        return Ok(());
                    }
                };
                self.respond(cid, Status::SUCCESS, value);
            }
            nvme::FCTYPE_PROPERTY_SET if self.qid == Some(0) => {
                let value = u32::from_le_bytes([sqe[48], sqe[49], sqe[50], sqe[51]]);
                if ofst == nvme::REG_CC {
                    let before = self.with_ctrl(|c| std::mem::replace(&mut c.cc, value));
                    if value & CC_SHN != 0 && before.is_some_and(|cc| cc & CC_SHN == 0) {
                        self.shared.shutdowns.fetch_add(1, Ordering::SeqCst);
                    }
                    self.respond(cid, Status::SUCCESS, 0);
                } else {
                    self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
                }
            }
            nvme::FCTYPE_CONNECT => return Err(Fatal("second Connect on a queue".into())),
            _ => self.respond(cid, Status::generic(nvme::SC_INVALID_OPCODE), 0),
        }
        Ok(())
    }

    pub(super) fn identify(&self, cns: u8, nsid: u32) -> Option<Vec<u8>> {
        let cfg = &self.shared.config;
        let discovery = self.with_ctrl(|c| c.discovery).unwrap_or(false);
        let mut d = vec![0u8; nvme::IDENTIFY_LEN];
        match cns {
            nvme::CNS_CONTROLLER => {
                d[4..20].copy_from_slice(b"0123456789abcdef");
                let mn = b"ulp-ddp embedded target";
                d[24..24 + mn.len()].copy_from_slice(mn);
                d[64..69].copy_from_slice(b"0.1.0");
                d[78..80].copy_from_slice(&self.cntlid.unwrap_or(0).to_le_bytes());
                d[80..84].copy_from_slice(&0x0001_0300u32.to_le_bytes()); // VER
                d[92..96].copy_from_slice(&Ctrl::supported_aen(discovery).to_le_bytes()); // OAES
                d[111] = if discovery {
                    nvme::CNTRLTYPE_DISCOVERY
                } else {
                    nvme::CNTRLTYPE_IO
                };
                d[259] = AERL;
                d[261] = 1 << 2; // LPA: extended data (offsets, 32-bit lengths) in Get Log Page
                d[512] = 0x66;
                d[513] = 0x44;
                d[514..516].copy_from_slice(&1024u16.to_le_bytes());
                d[536..540].copy_from_slice(&0x0010_0005u32.to_le_bytes());
                let nqn = if discovery {
                    nvme::DISCOVERY_NQN.as_bytes()
                } else {
                    d[516..520].copy_from_slice(&1u32.to_le_bytes()); // NN
                    d[1792..1796].copy_from_slice(&cfg.ioccsz.to_le_bytes());
                    d[1796..1800].copy_from_slice(&1u32.to_le_bytes());
                    cfg.subnqn.as_bytes()
                };
                let n = nqn.len().min(255);
                d[768..768 + n].copy_from_slice(&nqn[..n]);
                Some(d)
            }
            // A discovery controller has no namespaces.
            _ if discovery => None,
            nvme::CNS_NAMESPACE if nsid == 1 => {
                let blocks = cfg.size / u64::from(cfg.block_len.max(1));
                for at in [0, 8, 16] {
                    d[at..at + 8].copy_from_slice(&blocks.to_le_bytes());
                }
                d[130] = cfg.block_len.trailing_zeros() as u8;
                Some(d)
            }
            nvme::CNS_ACTIVE_NS_LIST => {
                if nsid < 1 {
                    d[..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Some(d)
            }
            _ => None,
        }
    }

    /// Get Log Page: the Discovery log on a discovery controller, the Changed Namespace List on
    /// an I/O controller (reading it without RAE clears it and re-arms the notice), `len`
    /// bytes from `offset`, zeros past the log's end.
    pub(super) fn get_log_page(&mut self, cid: u16, sqe: &[u8; 64]) -> Result<(), Fatal> {
        let s = Sqe::new_unchecked(&sqe[..]);
        let (cdw10, cdw11) = (s.cdw10(), s.cdw11());
        let lid = cdw10 as u8;
        let lsp = (cdw10 >> 8) & 0x7F;
        let rae = cdw10 & (1 << 15) != 0;
        let numd = u64::from(cdw10 >> 16) | (u64::from(cdw11 & 0xFFFF) << 16);
        let len = (numd + 1) * 4;
        let offset = u64::from(s.cdw12()) | (u64::from(s.cdw13()) << 32);
        self.expect_read(cid, &s.dptr(), usize::try_from(len).unwrap_or(usize::MAX))?;
        let Some(discovery) = self.with_ctrl(|c| c.discovery) else {
            return Err(Fatal(format!(
                "cid {cid}: Get Log Page without a controller"
            )));
        };
        let log = match (discovery, lid) {
            (true, nvme::LID_DISCOVERY) if lsp == 0 => {
                ctrl::discovery_log(self.shared.addr, &self.shared.config.subnqn)
            }
            (false, nvme::LID_CHANGED_NS_LIST) if lsp == 0 => {
                let nsids = self
                    .with_ctrl(|c| {
                        let nsids = c.changed_ns.clone();
                        if !rae {
                            c.changed_ns.clear();
                            c.aen_masked &= !nvme::AEC_NAMESPACE_ATTRIBUTE;
                        }
                        nsids
                    })
                    .unwrap_or_default();
                ctrl::changed_ns_list(&nsids)
            }
            (true, nvme::LID_DISCOVERY) | (false, nvme::LID_CHANGED_NS_LIST) => {
                self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
                return Ok(());
            }
            _ => {
                self.respond(cid, command_specific(nvme::SC_INVALID_LOG_PAGE), 0);
                return Ok(());
            }
        };
        if offset % 4 != 0 || offset > log.len() as u64 || len > MAX_LOG_READ {
            self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
            return Ok(());
        }
        // Both within 1 MiB here.
        let (offset, len) = (offset as usize, len as usize);
        let mut data = vec![0u8; len];
        let end = log.len().min(offset + len);
        data[..end - offset].copy_from_slice(&log[offset..end]);
        self.send_read(
            cid,
            vec![Piece {
                data: Arc::new(data),
                range: 0..len,
            }],
        );
        Ok(())
    }

    /// Set Features: Asynchronous Event Configuration (bits the controller does not report
    /// are refused); other features are accepted and ignored.
    pub(super) fn set_features(&mut self, cid: u16, sqe: &[u8; 64]) {
        let s = Sqe::new_unchecked(&sqe[..]);
        if s.cdw10() as u8 == nvme::FID_NUMBER_OF_QUEUES {
            // Grants what is asked, up to 64 submission and completion queues.
            let ask = s.cdw11();
            let nsq = (ask & 0xFFFF).min(63);
            let ncq = (ask >> 16).min(63);
            self.respond(cid, Status::SUCCESS, u64::from(nsq | (ncq << 16)));
            return;
        }
        if s.cdw10() as u8 != nvme::FID_ASYNC_EVENT_CONFIG {
            self.respond(cid, Status::SUCCESS, 0);
            return;
        }
        let value = s.cdw11();
        let accepted = self.with_ctrl(|c| {
            if value & !Ctrl::supported_aen(c.discovery) != 0 {
                return false;
            }
            c.aen_enabled = value;
            true
        });
        if accepted == Some(true) {
            self.respond(cid, Status::SUCCESS, u64::from(value));
        } else {
            self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
        }
    }

    /// Asynchronous Event Request: completed at once with an event that waits, else held
    /// (at most AERL + 1; one more fails with Asynchronous Event Request Limit Exceeded).
    pub(super) fn async_event_request(&mut self, cid: u16) -> Result<(), Fatal> {
        enum Answer {
            Event(u32),
            Held,
            Limit,
        }
        let answer = self.with_ctrl(|c| {
            if let Some(event) = c.events.pop_front() {
                Answer::Event(event.to_dw0())
            } else if c.aers.len() > usize::from(AERL) {
                Answer::Limit
            } else {
                // Consumed now; its completion, later, reports the SQ head as it stands then.
                self.advance_sqhd();
                c.aers.push_back(cid);
                Answer::Held
            }
        });
        match answer {
            None => return Err(Fatal(format!("cid {cid}: AER without a controller"))),
            Some(Answer::Event(dw0)) => self.respond(cid, Status::SUCCESS, u64::from(dw0)),
            Some(Answer::Limit) => {
                self.respond(cid, command_specific(nvme::SC_AER_LIMIT_EXCEEDED), 0);
            }
            Some(Answer::Held) => {}
        }
        Ok(())
    }
}
