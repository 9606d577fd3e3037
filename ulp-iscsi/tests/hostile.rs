//! A hostile target: every violation ends in a typed error and the protocol's answer (drop
//! the connection at ErrorRecoveryLevel 0, or fail only the command for a Reject), never a
//! panic, never a write outside the command's buffer.

mod common;

use common::*;
use ulp_ddp_core::{DataError, Error as EngineError, SgBuffer};
use ulp_iscsi::blocking::Session;
use ulp_iscsi::connection::Phase;
use ulp_iscsi::scsi;
use ulp_iscsi::wire::reject::RejectReason;
use ulp_iscsi::wire::{Error as WireError, Lun, Opcode};
use ulp_iscsi::{Command, CommandError, ConnectionError, Data, Violation};
use ulp_testbed::iscsi::{Misbehave, Target, TargetConfig};

const CANARY: u8 = 0xEE;

/// Logs in to a target misbehaving as `m`, reads `len` bytes into a canary-filled buffer and
/// returns the connection error, the command's result and the buffer that came back.
fn attack(
    m: Misbehave,
    len: usize,
    digests: bool,
) -> (Option<ConnectionError>, Result<(), CommandError>, Vec<u8>) {
    let t = Target::start(TargetConfig {
        misbehave: m,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut cfg = config(t.iqn(), digests);
    cfg.wanted.max_recv_data_segment_len = 8192;
    let mut c = Session::connect(t.addr(), cfg, options_without_reinstatement()).unwrap();
    let done = c
        .execute(Command {
            lun: Lun::default(),
            cdb: scsi::read_10(0, (len / 512) as u16),
            data: Data::Read(SgBuffer::from_vec(vec![CANARY; len])),
        })
        .expect("the command completes even when the connection fails");
    let buffer = done
        .buffer
        .expect("the buffer always comes back")
        .into_vec();
    assert_eq!(buffer.len(), len);
    assert_eq!(
        c.connection().engine().registered(),
        0,
        "a buffer stayed registered"
    );
    let failure = c.connection().failure().cloned();
    if failure.is_some() {
        assert_eq!(c.connection().phase(), Phase::Failed);
        // Nothing more goes out on a failed connection.
        assert!(c.test_unit_ready(Lun::default()).is_err());
    }
    (failure, done.result.map(|_| ()), buffer)
}

fn untouched(b: &[u8]) -> bool {
    b.iter().all(|&x| x == CANARY)
}

/// Every byte is either the canary or the LUN's data at its offset (the embedded target's RAM
/// LUN is zeros at LBA 0): the engine wrote nothing but Data-In payload at its Buffer Offset.
/// What holds however the target's bytes were cut into reads; how far placement got after the
/// violation depends on the cut.
fn only_lun_data(b: &[u8]) -> bool {
    b.iter().all(|&x| x == CANARY || x == 0)
}

#[test]
fn data_in_outside_the_command() {
    let (e, r, b) = attack(Misbehave::OffsetOutsideCommand, 4096, false);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Protocol(Violation::Data(
                DataError::OutOfRange { offset: 4096, .. }
            )))
        ),
        "{e:?}"
    );
    assert_eq!(
        r,
        Err(CommandError::ConnectionLost(Box::new(
            e.expect("a failure")
        )))
    );
    assert!(untouched(&b));
    let (e, _, b) = attack(Misbehave::LengthOutsideCommand, 4096, true);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Protocol(Violation::Data(
                DataError::OutOfRange {
                    offset: 1,
                    len: 4096,
                    buffer_len: 4096,
                    ..
                }
            )))
        ),
        "{e:?}"
    );
    assert!(untouched(&b));
}

#[test]
fn data_in_for_unknown_itt_and_for_a_write() {
    let (e, r, b) = attack(Misbehave::UnknownItt, 4096, false);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Protocol(Violation::Data(
                DataError::UnknownTag(_)
            )))
        ),
        "{e:?}"
    );
    assert_eq!(
        r,
        Err(CommandError::ConnectionLost(Box::new(
            e.expect("a failure")
        )))
    );
    assert!(untouched(&b));

    let t = Target::start(TargetConfig {
        misbehave: Misbehave::DataInForWrite,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        options_without_reinstatement(),
    )
    .unwrap();
    c.set_block_len(Lun::default(), 512);
    let err = c
        .write(Lun::default(), 0, SgBuffer::from_vec(pattern(4096, 1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ulp_iscsi::blocking::Error::Command {
                error: CommandError::ConnectionLost(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        c.connection().failure(),
        Some(ConnectionError::Protocol(Violation::Data(
            DataError::UnknownTag(_)
        )))
    ));
}

#[test]
fn data_sn_gap_and_duplicate_data() {
    let (e, _, b) = attack(Misbehave::DataSnGap, 32768, false);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Protocol(Violation::DataSn {
                expected: 1,
                received: 2,
                ..
            }))
        ),
        "{e:?}"
    );
    // The first PDU (DataSN 0, 8 KiB) was placed and accepted before the violation whatever
    // the cut; the PDU with the gap (and, depending on how the bytes were cut into reads, the
    // ones after it) may have been placed inside the buffer before the session saw its DataSN.
    assert!(b[..8192].iter().all(|&x| x == 0));
    assert!(only_lun_data(&b));
    let (e, _, b) = attack(Misbehave::DuplicateData, 32768, true);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Protocol(Violation::Data(
                DataError::Duplicate { offset: 0, .. }
            )))
        ),
        "{e:?}"
    );
    // The first PDU was placed; the duplicate was refused; later PDUs may or may not have
    // been placed depending on the cut, but only at their offsets.
    assert!(b[..8192].iter().all(|&x| x == 0));
    assert!(only_lun_data(&b));
}

#[test]
fn bad_digests() {
    // A Data-In data digest error fails that command only (RFC 7143 §7.8 at
    // ErrorRecoveryLevel 0: discard the PDU, terminate the command with an error); the
    // connection goes on.
    let (e, r, b) = attack(Misbehave::BadDataDigest, 4096, true);
    assert_eq!(e, None, "the connection survives a Data-In digest error");
    assert!(
        matches!(
            r,
            Err(CommandError::DataDigest {
                data_sn: 0,
                offset: 0,
                ..
            })
        ),
        "{r:?}"
    );
    // The data was placed before its digest arrived; the command still fails.
    assert_eq!(b.len(), 4096);
    let (e, _, b) = attack(Misbehave::BadHeaderDigest, 4096, true);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Engine(EngineError::HeaderDigest { .. }))
        ),
        "{e:?}"
    );
    assert!(untouched(&b));
}

/// `m` fails the connection with an invalid header field at byte `offset`, and the read's
/// buffer stays untouched.
fn rejects_field(m: Misbehave, len: usize, offset: u8) {
    let (e, _, b) = attack(m, len, false);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Wire(w)) if w.field_offset() == Some(offset)
        ),
        "{e:?}"
    );
    assert!(untouched(&b));
}

#[test]
fn bad_lengths_flags_and_opcodes() {
    rejects_field(Misbehave::OversizedSegment, 32768, 5);
    rejects_field(Misbehave::StatusWithoutFinal, 4096, 1);
    let (e, _, _) = attack(Misbehave::InitiatorOpcode, 4096, false);
    assert!(
        matches!(
            e,
            Some(ConnectionError::Wire(WireError::WrongDirection(
                Opcode::ScsiCommand
            )))
        ),
        "{e:?}"
    );
    let (e, r, _) = attack(Misbehave::TruncatedPdu, 4096, false);
    assert_eq!(e, Some(ConnectionError::PeerClosed));
    assert_eq!(
        r,
        Err(CommandError::ConnectionLost(Box::new(
            e.expect("a failure")
        )))
    );
}

#[test]
fn reject_fails_only_the_command() {
    let (e, r, b) = attack(Misbehave::RejectReads, 4096, true);
    assert_eq!(e, None, "a Reject of one command keeps the connection");
    assert_eq!(
        r,
        Err(CommandError::Rejected(RejectReason::InvalidPduField))
    );
    assert!(untouched(&b));
    // Through the driver: read hands the caller's buffer back with the command error.
    let t = Target::start(TargetConfig {
        misbehave: Misbehave::RejectReads,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        options_without_reinstatement(),
    )
    .unwrap();
    let buffer = SgBuffer::from_segments(vec![vec![CANARY; 1000], vec![CANARY; 3096]]);
    c.set_block_len(Lun::default(), 512);
    match c.read(Lun::default(), 0, buffer) {
        Err(ulp_iscsi::blocking::Error::Command {
            error: CommandError::Rejected(RejectReason::InvalidPduField),
            buffer: Some(b),
        }) => {
            assert_eq!(b.segment_count(), 2, "the same allocations come back");
            assert!(untouched(&b.into_vec()));
        }
        other => panic!("expected the rejection with the buffer, got {other:?}"),
    }
    assert_eq!(c.connection().phase(), Phase::FullFeature);
}

#[test]
fn r2t_beyond_the_write() {
    let t = Target::start(TargetConfig {
        misbehave: Misbehave::R2tBeyondWrite,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        options_without_reinstatement(),
    )
    .unwrap();
    c.set_block_len(Lun::default(), 512);
    let err = c
        .write(
            Lun::default(),
            0,
            SgBuffer::from_vec(pattern(128 * 1024, 1)),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            ulp_iscsi::blocking::Error::Command {
                error: CommandError::ConnectionLost(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        matches!(
            c.connection().failure(),
            Some(ConnectionError::Protocol(Violation::R2tOutsideWrite {
                write_len: 131_072,
                ..
            }))
        ),
        "{:?}",
        c.connection().failure()
    );
}
