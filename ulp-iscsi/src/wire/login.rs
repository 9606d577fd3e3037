//! Login Request (0x03, always sent as 0x43) and Login Response (0x23), RFC 7143 §11.12–§11.13.
//!
//! | Off | Size | Request | Response |
//! |---|---|---|---|
//! | 1 | 1 | T 0x80, C 0x40, CSG 0x0C, NSG 0x03 | same |
//! | 2 | 1 | Version-max | Version-max |
//! | 3 | 1 | Version-min | Version-active |
//! | 8 | 6 | ISID | ISID |
//! | 14 | 2 | TSIH | TSIH |
//! | 16 | 4 | ITT | ITT |
//! | 20 | 2 | CID | reserved |
//! | 24 | 4 | CmdSN | StatSN |
//! | 28 | 4 | ExpStatSN | ExpCmdSN |
//! | 32 | 4 | reserved | MaxCmdSN |
//! | 36 | 2 | reserved | Status-Class, Status-Detail |
//!
//! The data segment is text (see [`super::text`]). Login PDUs never carry digests: the `digests`
//! argument of their `parse`/`emit` is ignored.

use super::bhs::Packet;
use super::{Body, Error, Itt, Opcode, Result, impl_pdu, no_ahs, reserved_bits};

/// Byte 1: transit bit.
pub const TRANSIT_BIT: u8 = 0x80;
/// Byte 1: continue bit.
pub const CONTINUE_BIT: u8 = 0x40;

/// Login stages (CSG / NSG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Stage {
    /// Security negotiation.
    Security = 0,
    /// Login operational negotiation.
    Operational = 1,
    /// Full feature phase.
    FullFeature = 3,
}

impl Stage {
    fn from_bits(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Self::Security),
            1 => Ok(Self::Operational),
            3 => Ok(Self::FullFeature),
            _ => Err(Error::InvalidValue { offset: 1 }),
        }
    }
}

/// The stage bits of byte 1: CSG always, NSG only with T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// C bit: more text follows in another PDU (excludes `next`).
    pub cont: bool,
    /// CSG.
    pub current: Stage,
    /// NSG when T is set; `None` when T is clear (NSG is then ignored).
    pub next: Option<Stage>,
}

impl Stages {
    fn parse(flags: u8) -> Result<Self> {
        let transit = flags & TRANSIT_BIT != 0;
        let cont = flags & CONTINUE_BIT != 0;
        //= https://www.rfc-editor.org/rfc/rfc7143#section-11.12.2
        //# If the T bit is set to 1, the C bit MUST be set to 0.
        if transit && cont {
            return Err(Error::FlagConflict { offset: 1 });
        }
        if flags & 0x30 != 0 {
            return Err(Error::Reserved { offset: 1 });
        }
        let current = Stage::from_bits((flags >> 2) & 3)?;
        let next = if transit {
            Some(Stage::from_bits(flags & 3)?)
        } else {
            None
        };
        Ok(Self {
            cont,
            current,
            next,
        })
    }

    fn check(&self) -> Result<()> {
        if self.cont && self.next.is_some() {
            Err(Error::FlagConflict { offset: 1 })
        } else {
            Ok(())
        }
    }

    fn bits(&self) -> u8 {
        let mut b = (self.current as u8) << 2;
        if self.cont {
            b |= CONTINUE_BIT;
        }
        if let Some(n) = self.next {
            b |= TRANSIT_BIT | n as u8;
        }
        b
    }
}

/// Login Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequestRepr<'a> {
    /// T/C/CSG/NSG.
    pub stages: Stages,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID (6 bytes).
    pub isid: [u8; 6],
    /// TSIH (0 to create a session).
    pub tsih: u16,
    /// ITT.
    pub itt: Itt,
    /// CID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Text data (key=value pairs).
    pub data: &'a [u8],
}

/// Login Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponseRepr<'a> {
    /// T/C/CSG/NSG.
    pub stages: Stages,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH.
    pub tsih: u16,
    /// ITT.
    pub itt: Itt,
    /// StatSN (not valid when `status_class` ≠ 0).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status-Class (0 success, 1 redirection, 2 initiator error, 3 target error).
    pub status_class: u8,
    /// Status-Detail.
    pub status_detail: u8,
    /// Text data.
    pub data: &'a [u8],
}

impl LoginResponseRepr<'_> {
    /// Status class and detail as one code, e.g. 0x0201 for an authentication failure.
    pub const fn status(&self) -> u16 {
        u16::from_be_bytes([self.status_class, self.status_detail])
    }
}

fn isid_tsih(pkt: &Packet<&[u8]>) -> ([u8; 6], u16) {
    let l = pkt.lun().0;
    (
        [l[0], l[1], l[2], l[3], l[4], l[5]],
        u16::from_be_bytes([l[6], l[7]]),
    )
}

fn set_isid_tsih(pkt: &mut Packet<&mut [u8]>, isid: [u8; 6], tsih: u16) {
    let t = tsih.to_be_bytes();
    let [a, b, c, d, e, f] = isid;
    pkt.set_lun(super::Lun([a, b, c, d, e, f, t[0], t[1]]));
}

impl<'a> Body<'a> for LoginRequestRepr<'a> {
    const OPCODE: Opcode = Opcode::LoginRequest;
    const NO_DIGESTS: bool = true;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        //= https://www.rfc-editor.org/rfc/rfc7143#section-11.12
        //# the Login Request PDU ... I bit ... MUST be set to 1
        if !pkt.immediate() {
            return Err(Error::InvalidValue { offset: 0 });
        }
        let (isid, tsih) = isid_tsih(pkt);
        Ok(Self {
            stages: Stages::parse(pkt.flags())?,
            version_max: pkt.byte(2),
            version_min: pkt.byte(3),
            isid,
            tsih,
            itt: pkt.itt(),
            cid: pkt.half_word(10),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
            data,
        })
    }

    fn check(&self) -> Result<()> {
        self.stages.check()
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(true);
        pkt.set_flags(self.stages.bits());
        pkt.set_byte(2, self.version_max);
        pkt.set_byte(3, self.version_min);
        set_isid_tsih(pkt, self.isid, self.tsih);
        pkt.set_itt(self.itt);
        pkt.set_half_word(10, self.cid);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl<'a> Body<'a> for LoginResponseRepr<'a> {
    const OPCODE: Opcode = Opcode::LoginResponse;
    const NO_DIGESTS: bool = true;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        let (isid, tsih) = isid_tsih(pkt);
        Ok(Self {
            stages: Stages::parse(pkt.flags())?,
            version_max: pkt.byte(2),
            version_active: pkt.byte(3),
            isid,
            tsih,
            itt: pkt.itt(),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            status_class: pkt.byte(36),
            status_detail: pkt.byte(37),
            data,
        })
    }

    fn check(&self) -> Result<()> {
        self.stages.check()
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(self.stages.bits());
        pkt.set_byte(2, self.version_max);
        pkt.set_byte(3, self.version_active);
        set_isid_tsih(pkt, self.isid, self.tsih);
        pkt.set_itt(self.itt);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_byte(36, self.status_class);
        pkt.set_byte(37, self.status_detail);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(LoginRequestRepr);
impl_pdu!(LoginResponseRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{data, digests, itt};

    const TEXT: &[u8] = b"InitiatorName=iqn.x\0SessionType=Normal\0";

    /// Leading login, security stage -> operational, random ISID 0x80 12 34 56 00 01.
    fn login_req() -> Vec<u8> {
        let mut b = vec![
            0x43,
            0x81,
            0x00,
            0x00,
            0,
            0,
            0,
            TEXT.len() as u8, // T, CSG 0, NSG 1
            0x80,
            0x12,
            0x34,
            0x56,
            0x00,
            0x01,
            0x00,
            0x00, // ISID, TSIH 0
            0,
            0,
            0,
            1, // ITT
            0,
            0,
            0,
            0, // CID 0
            0,
            0,
            0,
            1, // CmdSN
            0,
            0,
            0,
            0, // ExpStatSN
        ];
        b.resize(48, 0);
        b.extend_from_slice(TEXT);
        b.resize(48 + TEXT.len() + crate::wire::pad_len(TEXT.len()), 0);
        b
    }

    #[test]
    fn parse_request() {
        let b = login_req();
        // Digests are ignored for login PDUs.
        let r = LoginRequestRepr::parse(&b, Digests::BOTH).unwrap();
        assert_eq!(
            r.stages,
            Stages {
                cont: false,
                current: Stage::Security,
                next: Some(Stage::Operational)
            }
        );
        assert_eq!((r.version_max, r.version_min), (0, 0));
        assert_eq!(r.isid, [0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
        assert_eq!((r.tsih, r.itt, r.cid, r.cmd_sn), (0, Itt(1), 0, 1));
        assert_eq!(r.data, TEXT);
        let mut out = vec![0u8; b.len()];
        assert_eq!(r.emit(&mut out, Digests::BOTH), Ok(b.len()));
        assert_eq!(out, b);
    }

    #[test]
    fn bad_flags() {
        let mut b = login_req();
        b[1] = 0xC1;
        assert_eq!(
            LoginRequestRepr::parse(&b, Digests::NONE),
            Err(Error::FlagConflict { offset: 1 })
        );
        let mut b = login_req();
        b[1] = 0x82; // NSG 2 is reserved
        assert_eq!(
            LoginRequestRepr::parse(&b, Digests::NONE),
            Err(Error::InvalidValue { offset: 1 })
        );
        let mut b = login_req();
        b[0] = 0x03;
        assert_eq!(
            LoginRequestRepr::parse(&b, Digests::NONE),
            Err(Error::InvalidValue { offset: 0 })
        );
        // Without T, NSG is ignored.
        let mut b = login_req();
        b[1] = 0x41;
        let r = LoginRequestRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.stages.next, None);
        assert!(r.stages.cont);
    }

    #[test]
    fn response_status() {
        let mut b = vec![0x23, 0x87, 0, 0, 0, 0, 0, 0];
        b.resize(48, 0);
        b[14] = 0x00;
        b[15] = 0x07; // TSIH
        b[36] = 0x02;
        b[37] = 0x01;
        let r = LoginResponseRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.status(), 0x0201);
        assert_eq!(r.tsih, 7);
        assert_eq!(r.stages.current, Stage::Operational);
        assert_eq!(r.stages.next, Some(Stage::FullFeature));
    }

    fn stages() -> impl Strategy<Value = Stages> {
        let stage = prop::sample::select(vec![
            Stage::Security,
            Stage::Operational,
            Stage::FullFeature,
        ]);
        (any::<bool>(), stage.clone(), proptest::option::of(stage)).prop_map(
            |(c, current, next)| Stages {
                cont: c && next.is_none(),
                current,
                next,
            },
        )
    }

    proptest! {
        #[test]
        fn round_trip(st in stages(), v in any::<[u8; 4]>(), isid in any::<[u8; 6]>(),
                      tsih in any::<u16>(), cid in any::<u16>(), itt in itt(),
                      w in any::<[u32; 3]>(), d in data(), dg in digests()) {
            let r = LoginRequestRepr {
                stages: st, version_max: v[0], version_min: v[1], isid, tsih, itt, cid,
                cmd_sn: w[0], exp_stat_sn: w[1], data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(LoginRequestRepr::parse(&buf, dg), Ok(r));
            let r = LoginResponseRepr {
                stages: st, version_max: v[0], version_active: v[1], isid, tsih, itt,
                stat_sn: w[0], exp_cmd_sn: w[1], max_cmd_sn: w[2], status_class: v[2],
                status_detail: v[3], data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(LoginResponseRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = LoginRequestRepr::parse(&bytes, dg);
            let _ = LoginResponseRepr::parse(&bytes, dg);
        }
    }
}
