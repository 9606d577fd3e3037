//! The codec's shared machinery, tested.

use proptest::prelude::*;

use super::*;

#[test]
fn opcode_round_trip() {
    for v in 0u8..=0x3F {
        if let Ok(op) = Opcode::try_from(v) {
            assert_eq!(u8::from(op), v);
        } else {
            assert_eq!(Opcode::try_from(v), Err(Error::UnknownOpcode(v)));
        }
    }
    assert_eq!(Opcode::try_from(0x3F), Ok(Opcode::Reject));
    assert_eq!(Opcode::try_from(0x1C), Err(Error::UnknownOpcode(0x1C)));
}

#[test]
fn digest_known_answers() {
    use ulp_ddp_core::digest::{crc32c, to_wire};
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(to_wire(crc32c(b"123456789")), [0x83, 0x92, 0x06, 0xE3]);
    // RFC 3720 B.4 vectors, wire bytes LSB first.
    assert_eq!(to_wire(crc32c(&[0u8; 32])), [0xAA, 0x36, 0x91, 0x8A]);
    assert_eq!(to_wire(crc32c(&[0xFFu8; 32])), [0x43, 0xAB, 0xA8, 0x62]);
    let inc: Vec<u8> = (0u8..32).collect();
    assert_eq!(to_wire(crc32c(&inc)), [0x4E, 0x79, 0xDD, 0x46]);
    let dec: Vec<u8> = (0u8..32).rev().collect();
    assert_eq!(to_wire(crc32c(&dec)), [0x5C, 0xDB, 0x3F, 0x11]);
    assert_eq!(crc32c(&[0u8; 64]), 0x03C8_EB67);
    assert_eq!(crc32c(&[0xFFu8; 64]), 0x2FCD_4E66);
}

#[test]
fn pad_lengths() {
    assert_eq!([0, 1, 2, 3, 4, 5].map(pad_len), [0, 3, 2, 1, 0, 3]);
}

#[test]
fn errors_display() {
    let e = Error::Truncated { need: 48, have: 3 };
    assert_eq!(e.to_string(), "truncated PDU: need 48 bytes, have 3");
    let _: &dyn core::error::Error = &e;
}

#[test]
fn generic_unexpected_opcode() {
    let mut buf = [0u8; 48];
    buf[0] = 0x20;
    buf[1] = 0x80;
    assert_eq!(
        nop::NopOutRepr::parse(&buf, Digests::NONE),
        Err(Error::UnexpectedOpcode {
            expected: Opcode::NopOut,
            found: Opcode::NopIn
        })
    );
    assert!(matches!(Pdu::parse(&buf, Digests::NONE), Ok(Pdu::NopIn(_))));
    buf[0] = 0x1C;
    assert_eq!(
        Pdu::parse(&buf, Digests::NONE),
        Err(Error::UnknownOpcode(0x1C))
    );
    buf[0] = 0xA0;
    assert_eq!(
        Pdu::parse(&buf, Digests::NONE),
        Err(Error::Reserved { offset: 0 })
    );
}

#[test]
fn trailing_bytes() {
    let mut buf = [0u8; 52];
    buf[0] = 0x20;
    buf[1] = 0x80;
    assert_eq!(
        Pdu::parse(&buf, Digests::NONE),
        Err(Error::TrailingBytes {
            pdu_len: 48,
            have: 52
        })
    );
}

proptest! {
    #[test]
    fn pdu_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                              op in prop::sample::select(vec![
                                  0x00u8, 0x01, 0x02, 0x43, 0x04, 0x05, 0x06, 0x10, 0x20,
                                  0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3F]),
                              d in test_util::digests()) {
        let mut bytes = bytes;
        if let Some(b) = bytes.first_mut() {
            *b = op;
        }
        // Force plausible lengths sometimes so deeper code runs.
        if bytes.len() >= 48 {
            let dsl = (bytes.len() - 48).min(40) as u32;
            bytes[4] = 0;
            bytes[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
        }
        if let Ok(pdu) = Pdu::parse(&bytes, d) {
            let mut out = vec![0u8; bytes.len() + 64];
            let n = pdu.emit(&mut out, d).unwrap();
            prop_assert_eq!(Pdu::parse(&out[..n], d).unwrap(), pdu);
        }
    }
}
