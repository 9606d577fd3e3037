//! The common header and PDU layout, tested.

use proptest::prelude::*;

use super::*;

// CapsuleCmd, HDGSTF|DDGSTF, HLEN 72, PDO 76, PLEN 76 + 8 + 4 = 88.
static CH_CAPSULE: [u8; 8] = [0x04, 0x03, 72, 76, 88, 0, 0, 0];

#[test]
fn deconstruct() {
    let p = Packet::new_checked(&CH_CAPSULE[..]).unwrap();
    assert_eq!(p.pdu_type(), 0x04);
    assert_eq!(p.flags(), 0x03);
    assert_eq!(p.hlen(), 72);
    assert_eq!(p.pdo(), 76);
    assert_eq!(p.plen(), 88);
    let l = Layout::parse(&CH_CAPSULE, Digests::BOTH).unwrap();
    assert_eq!(
        l,
        Layout {
            pdu_type: PduType::CapsuleCmd,
            hlen: 72,
            pdo: 76,
            hdgst: true,
            pad: 0,
            data_offset: 76,
            data_len: 8,
            ddgst: true,
            plen: 88,
        }
    );
    assert_eq!(l.header_len(), 76);
    assert_eq!(l.hdgst_range(), Some(72..76));
    assert_eq!(l.data_range(), 76..84);
    assert_eq!(l.ddgst_range(), Some(84..88));
    assert_eq!(header_len(&CH_CAPSULE, Digests::BOTH), Ok(76));
    assert_eq!(pdu_len(&CH_CAPSULE), Ok(88));
}

#[test]
fn construct() {
    let mut buf = [0xAAu8; 8];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_pdu_type(0x04);
    p.set_flags(0x03);
    p.set_hlen(72);
    p.set_pdo(76);
    p.set_plen(88);
    assert_eq!(buf, CH_CAPSULE);
}

#[test]
fn endianness() {
    let mut buf = [0u8; 8];
    Packet::new_unchecked(&mut buf[..]).set_plen(0x0000_0104);
    assert_eq!(buf[4..], [0x04, 0x01, 0x00, 0x00]);
    assert_eq!(Packet::new_unchecked(&buf[..]).plen(), 0x104);
}

#[test]
fn truncated() {
    for n in 0..8 {
        assert_eq!(
            Packet::new_checked(&CH_CAPSULE[..n]).err(),
            Some(Error::Truncated { need: 8, have: n })
        );
        assert_eq!(
            pdu_len(&CH_CAPSULE[..n]),
            Err(Error::Truncated { need: 8, have: n })
        );
        assert!(Layout::parse(&CH_CAPSULE[..n], Digests::BOTH).is_err());
    }
}

#[test]
fn impossible_len() {
    // PLEN smaller than HLEN.
    let ch = [0x05, 0, 24, 0, 23, 0, 0, 0];
    assert!(matches!(pdu_len(&ch), Err(Error::BadPlen { .. })));
    assert!(matches!(
        Layout::parse(&ch, Digests::NONE),
        Err(Error::BadPlen { .. })
    ));
    // CapsuleResp with HDGST: PLEN must be exactly 28.
    let ch = [0x05, HDGSTF, 24, 0, 24, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&ch, Digests::BOTH),
        Err(Error::BadPlen { .. })
    ));
    // PDO inside the header digest.
    let ch = [0x07, HDGSTF, 24, 26, 40, 0, 0, 0];
    assert!(matches!(
        Layout::parse(
            &ch,
            Digests {
                header: true,
                data: false
            }
        ),
        Err(Error::BadPdo { header_len: 28, .. })
    ));
    // PDO beyond PLEN.
    let ch = [0x07, 0, 24, 24, 24, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&ch, Digests::NONE),
        Err(Error::BadPlen { .. })
    ));
    // Data PDU without data.
    let ch = [0x06, 0, 24, 0, 24, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&ch, Digests::NONE),
        Err(Error::BadPdo { .. })
    ));
    // PLEN = u32::MAX is fine for the layout arithmetic.
    let ch = [0x07, DDGSTF, 24, 24, 0xFF, 0xFF, 0xFF, 0xFF];
    let l = Layout::parse(
        &ch,
        Digests {
            header: false,
            data: true,
        },
    )
    .unwrap();
    assert_eq!(l.data_len, 0xFFFF_FFFF - 28);
    // Wrong HLEN; unknown type.
    assert!(matches!(
        Layout::parse(&[0x09, 0, 28, 0, 28, 0, 0, 0], Digests::NONE),
        Err(Error::BadHlen {
            hlen: 28,
            expected: 24,
            ..
        })
    ));
    assert_eq!(
        Layout::parse(&[0x08, 0, 24, 0, 24, 0, 0, 0], Digests::NONE),
        Err(Error::UnknownPduType(8))
    );
}

#[test]
fn digest_flags_follow_negotiation() {
    let r2t_plain = [0x09, 0, 24, 0, 24, 0, 0, 0];
    let r2t_hd = [0x09, HDGSTF, 24, 0, 28, 0, 0, 0];
    assert!(Layout::parse(&r2t_plain, Digests::NONE).is_ok());
    assert!(matches!(
        Layout::parse(&r2t_plain, Digests::BOTH),
        Err(Error::DigestFlag {
            which: DigestKind::Header,
            negotiated: true,
            ..
        })
    ));
    assert!(matches!(
        Layout::parse(&r2t_hd, Digests::NONE),
        Err(Error::DigestFlag {
            which: DigestKind::Header,
            negotiated: false,
            ..
        })
    ));
    // DDGSTF is never valid on R2T.
    let r2t_dd = [0x09, HDGSTF | DDGSTF, 24, 0, 28, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&r2t_dd, Digests::BOTH),
        Err(Error::InvalidFlags { .. })
    ));
    // C2HData with data but DDGSTF clear while negotiated.
    let c2h = [0x07, 0, 24, 24, 32, 0, 0, 0];
    assert!(matches!(
        Layout::parse(
            &c2h,
            Digests {
                header: false,
                data: true
            }
        ),
        Err(Error::DigestFlag {
            which: DigestKind::Data,
            ..
        })
    ));
    // Reserved flag bits.
    let c2h = [0x07, 0x10, 24, 24, 32, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&c2h, Digests::NONE),
        Err(Error::InvalidFlags { .. })
    ));
    // ICResp never carries digests, whatever is negotiated.
    let ic = [0x01, 0, 128, 0, 128, 0, 0, 0];
    assert!(Layout::parse(&ic, Digests::BOTH).is_ok());
    let ic = [0x01, HDGSTF, 128, 0, 132, 0, 0, 0];
    assert!(matches!(
        Layout::parse(&ic, Digests::BOTH),
        Err(Error::InvalidFlags { .. })
    ));
}

#[test]
fn alignment_and_pad() {
    // CPDA 31: data at 128.
    let l = Layout::for_emit(PduType::CapsuleCmd, Digests::BOTH, Pda::MAX, 10).unwrap();
    assert_eq!((l.pdo, l.pad, l.data_offset, l.plen), (128, 52, 128, 142));
    assert_eq!(l.check_alignment(Pda::MAX), Ok(()));
    let l = Layout::for_emit(PduType::H2cData, Digests::NONE, Pda::new(3).unwrap(), 1).unwrap();
    assert_eq!((l.pdo, l.pad), (32, 8));
    assert_eq!(l.check_alignment(Pda::ZERO), Ok(()));
    assert_eq!(
        l.check_alignment(Pda::new(4).unwrap()),
        Err(Error::MisalignedPdo {
            pdo: 32,
            alignment: 20
        })
    );
}

#[test]
fn emit_len_errors() {
    assert!(matches!(
        Layout::for_emit(PduType::R2t, Digests::NONE, Pda::ZERO, 1),
        Err(Error::BadDataLen { .. })
    ));
    assert!(matches!(
        Layout::for_emit(PduType::C2hData, Digests::NONE, Pda::ZERO, 0),
        Err(Error::BadDataLen { .. })
    ));
    assert!(matches!(
        Layout::for_emit(PduType::C2hTermReq, Digests::NONE, Pda::ZERO, 129),
        Err(Error::BadDataLen { .. })
    ));
    assert!(matches!(
        Layout::for_emit(
            PduType::C2hData,
            Digests::BOTH,
            Pda::ZERO,
            u32::MAX as usize
        ),
        Err(Error::BadDataLen { .. })
    ));
}

#[test]
fn digest_known_answer() {
    assert_eq!(data_digest(b"123456789"), [0x83, 0x92, 0x06, 0xE3]);
    assert_eq!(data_digest(&[0u8; 32]), [0xAA, 0x36, 0x91, 0x8A]);
}

fn any_pdu_type() -> impl Strategy<Value = PduType> {
    prop::sample::select(vec![
        PduType::IcReq,
        PduType::IcResp,
        PduType::H2cTermReq,
        PduType::C2hTermReq,
        PduType::CapsuleCmd,
        PduType::CapsuleResp,
        PduType::H2cData,
        PduType::C2hData,
        PduType::R2t,
    ])
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16),
                          h in any::<bool>(), d in any::<bool>()) {
        let digests = Digests { header: h, data: d };
        if let Ok(l) = Layout::parse(&bytes, digests) {
            // Every identity holds on success.
            if l.pdo != 0 {
                prop_assert_eq!(usize::from(l.pdo), l.header_len() + l.pad);
            }
            prop_assert_eq!(
                l.data_offset + l.data_len + if l.ddgst { 4 } else { 0 },
                l.plen
            );
            prop_assert_eq!(pdu_len(&bytes), Ok(l.plen));
        }
        let _ = pdu_len(&bytes);
    }

    #[test]
    fn emit_layout_parses_back(t in any_pdu_type(), h in any::<bool>(), d in any::<bool>(),
                               pda in 0u8..32, len in 0usize..300) {
        let digests = Digests { header: h, data: d };
        let pda = Pda::new(pda).unwrap();
        if let Ok(l) = Layout::for_emit(t, digests, pda, len) {
            let mut ch = [0u8; 8];
            let mut p = Packet::new_unchecked(&mut ch[..]);
            p.set_pdu_type(t.into());
            p.set_flags(
                if l.hdgst { HDGSTF } else { 0 } | if l.ddgst { DDGSTF } else { 0 });
            p.set_hlen(t.hlen());
            p.set_pdo(l.pdo);
            p.set_plen(l.plen as u32);
            let parsed = Layout::parse(&ch, digests);
            prop_assert_eq!(parsed, Ok(l));
            prop_assert_eq!(l.check_alignment(pda), Ok(()));
        }
    }
}
