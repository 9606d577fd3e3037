//! Admin and Fabrics commands on a connection: Connect, Property Get/Set, Identify, and the
//! SGL check of admin reads.

use std::sync::atomic::Ordering;

use ulp_nvme_tcp::nvme::{self, Status};
use ulp_nvme_tcp::wire::capsule_cmd::SGL_ID_TRANSPORT_DATA_BLOCK;

use super::conn::{Conn, Fatal};
use super::lock;

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
        if recfmt != 0 || sqsize == 0 {
            self.respond(
                cid,
                Status {
                    sct: 1,
                    sc: nvme::SC_CONNECT_INVALID_PARAM as u8,
                    dnr: true,
                },
                0,
            );
            return Err(Fatal(format!("Connect RECFMT {recfmt} SQSIZE {sqsize}")));
        }
        let cntlid = u16::from_le_bytes([data[16], data[17]]);
        let subnqn = String::from_utf8_lossy(&data[256..512])
            .trim_end_matches('\0')
            .to_string();
        if subnqn != self.shared.config.subnqn {
            self.respond(
                cid,
                Status {
                    sct: 1,
                    sc: nvme::SC_CONNECT_INVALID_PARAM as u8,
                    dnr: true,
                },
                0,
            );
            return Err(Fatal(format!("Connect to unknown subsystem {subnqn:?}")));
        }
        let result = if qid == 0 {
            if cntlid != 0xFFFF {
                return Err(Fatal(format!("admin Connect with CNTLID {cntlid:#x}")));
            }
            self.shared.cc.store(0, Ordering::SeqCst);
            let id = self.shared.next_cntlid.fetch_add(1, Ordering::SeqCst);
            lock(&self.shared.cntlids).push(id);
            u64::from(id)
        } else {
            if !lock(&self.shared.cntlids).contains(&cntlid) {
                return Err(Fatal(format!("I/O Connect with unknown CNTLID {cntlid}")));
            }
            if self.shared.cc.load(Ordering::SeqCst) & 1 == 0 {
                return Err(Fatal("I/O Connect before CC.EN".into()));
            }
            if sqsize > 1023 {
                return Err(Fatal(format!("I/O SQSIZE {sqsize} above MQES")));
            }
            u64::from(cntlid)
        };
        self.qid = Some(qid);
        self.sqsize = sqsize + 1;
        self.respond(cid, Status::SUCCESS, result);
        Ok(())
    }

    pub(super) fn fabrics(&mut self, cid: u16, sqe: &[u8; 64]) -> Result<(), Fatal> {
        let ofst = u32::from_le_bytes([sqe[44], sqe[45], sqe[46], sqe[47]]);
        match sqe[4] {
            nvme::FCTYPE_PROPERTY_GET if self.qid == Some(0) => {
                let cc = self.shared.cc.load(Ordering::SeqCst);
                let value: u64 = match ofst {
                    nvme::REG_CAP => 1023 | (1 << 16) | (15 << 24) | (1 << 37),
                    nvme::REG_VS => 0x0001_0300,
                    nvme::REG_CC => u64::from(cc),
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
                    self.shared.cc.store(value, Ordering::SeqCst);
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
        let mut d = vec![0u8; nvme::IDENTIFY_LEN];
        match cns {
            nvme::CNS_CONTROLLER => {
                d[4..20].copy_from_slice(b"0123456789abcdef");
                let mn = b"ulp-ddp embedded target";
                d[24..24 + mn.len()].copy_from_slice(mn);
                d[64..69].copy_from_slice(b"0.1.0");
                d[512] = 0x66;
                d[513] = 0x44;
                d[514..516].copy_from_slice(&1024u16.to_le_bytes());
                d[516..520].copy_from_slice(&1u32.to_le_bytes());
                d[536..540].copy_from_slice(&0x0010_0005u32.to_le_bytes());
                let nqn = cfg.subnqn.as_bytes();
                let n = nqn.len().min(255);
                d[768..768 + n].copy_from_slice(&nqn[..n]);
                d[1792..1796].copy_from_slice(&cfg.ioccsz.to_le_bytes());
                d[1796..1800].copy_from_slice(&1u32.to_le_bytes());
                Some(d)
            }
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
}
