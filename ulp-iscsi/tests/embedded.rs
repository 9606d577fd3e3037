//! The initiator against the embedded target: login variants, every command, digests.

mod common;

use common::*;
use ulp_ddp_core::SgBuffer;
use ulp_iscsi::blocking::{Error, Session};
use ulp_iscsi::connection::{ChapCredentials, Residual};
use ulp_iscsi::scsi;
use ulp_iscsi::wire::Lun;
use ulp_iscsi::{ConnectionError, Data};
use ulp_testbed::iscsi::{Target, TargetConfig};

fn target(f: impl FnOnce(&mut TargetConfig)) -> Target {
    let mut c = TargetConfig::default();
    f(&mut c);
    Target::start(c).expect("start embedded target")
}

#[test]
fn tgtd_like_digests_off_and_on() {
    for digests in [false, true] {
        let t = target(|_| {});
        let mut c = Session::connect(t.addr(), config(t.iqn(), digests), options(false)).unwrap();
        let p = c.connection().params().clone();
        assert_eq!((p.header_digest, p.data_digest), (digests, digests));
        assert_eq!(p.max_xmit_data_segment_len, 8192);
        write_read_sizes(&mut c, Lun::default());
        assert_eq!(t.contents(0, 4096), pattern(4096, 1)[..]);
        let s = c.connection().engine().stats();
        assert!(
            s.bytes_read_in_place >= (4096 + 128 * 1024 + (1 << 20)) as u64,
            "{s:?}"
        );
        assert_eq!(s.bytes_copied, 0, "payload went through the receive buffer");
        if digests {
            assert!(s.digests_computed > 0 && s.digests_failed == 0);
        }
        c.logout().unwrap();
    }
}

#[test]
fn lio_like_multi_round_login_and_r2t_only_writes() {
    let t = target(|c| {
        c.propose_keys = true;
        c.unit_attention = false;
        c.initial_r2t = true;
        c.immediate_data = false;
        c.max_recv_data_segment_len = 262_144;
        c.max_burst_len = 65536;
    });
    // The full key set offered up front: nothing left to propose, one operational exchange,
    // the omitted answers (InitialR2T=Yes, ImmediateData=No, DataPDUInOrder=Yes,
    // DataSequenceInOrder=Yes) settled by their result functions.
    let mut cfg = config(t.iqn(), true);
    cfg.wanted.initial_r2t = true;
    cfg.wanted.immediate_data = false;
    let mut c = Session::connect(t.addr(), cfg.clone(), options(false)).unwrap();
    let p = c.connection().params().clone();
    assert_eq!(c.connection().login_rounds(), 2, "security, operational");
    assert_eq!(c.connection().operational_rounds(), 1);
    assert!(p.initial_r2t && !p.immediate_data);
    assert_eq!(p.max_burst_len, 65536);
    assert_eq!(p.max_xmit_data_segment_len, 262_144);
    assert_eq!((p.default_time2wait, p.default_time2retain), (2, 0));
    write_read_sizes(&mut c, Lun::default());
    c.logout().unwrap();
    // Without the full offer the target proposes the rest: a second operational exchange.
    cfg.wanted.offer_all = false;
    let mut c = Session::connect(t.addr(), cfg, options(false)).unwrap();
    assert_eq!(
        c.connection().login_rounds(),
        3,
        "security, proposals, answers"
    );
    assert_eq!(c.connection().operational_rounds(), 2);
    assert_eq!(c.connection().params().default_time2retain, 0);
    write_read_sizes(&mut c, Lun::default());
    c.logout().unwrap();
}

#[test]
fn unsolicited_data_out_and_small_segments() {
    let t = target(|c| {
        c.max_recv_data_segment_len = 1024;
        c.first_burst_len = 16384;
    });
    let mut cfg = config(t.iqn(), false);
    cfg.wanted.max_recv_data_segment_len = 4096;
    cfg.wanted.first_burst_len = 16384;
    let mut c = Session::connect(t.addr(), cfg, options(false)).unwrap();
    let p = c.connection().params().clone();
    assert!(!p.initial_r2t && p.immediate_data);
    write_read_sizes(&mut c, Lun::default());
}

#[test]
fn chap_login_and_bad_secret() {
    let t = target(|c| c.chap = Some(("user1".into(), b"secretpass12".to_vec())));
    let mut cfg = config(t.iqn(), false);
    cfg.chap = Some(ChapCredentials {
        user: "user1".into(),
        secret: b"secretpass12".to_vec(),
    });
    let mut c = Session::connect(t.addr(), cfg.clone(), options(false)).unwrap();
    c.test_unit_ready(Lun::default()).unwrap();
    c.logout().unwrap();
    cfg.chap = Some(ChapCredentials {
        user: "user1".into(),
        secret: b"wrong".to_vec(),
    });
    match Session::connect(t.addr(), cfg.clone(), options(false)) {
        Err(Error::Connection(
            e @ ConnectionError::LoginFailed {
                class: 2,
                detail: 1,
            },
        )) => assert_eq!(
            e.to_string(),
            "login failed: Authentication failure (0201h)"
        ),
        other => panic!("expected authentication failure, got {other:?}"),
    }
    cfg.chap = None;
    assert!(matches!(
        Session::connect(t.addr(), cfg, options(false)),
        Err(Error::Connection(
            ConnectionError::Chap(_) | ConnectionError::LoginFailed { .. }
        ))
    ));
}

/// Mutual CHAP: the initiator challenges the target (a fresh random challenge from the
/// blocking driver) and checks its answer; a target answering with another secret fails the
/// login, saying the target failed authentication.
#[test]
fn mutual_chap_login_and_a_target_that_fails_it() {
    let t = target(|c| {
        c.chap = Some(("user1".into(), b"secretpass12".to_vec()));
        c.mutual_chap = Some(("iqn.target-auth".into(), b"targetsecret34".to_vec()));
    });
    let mut cfg = config(t.iqn(), false);
    cfg.chap = Some(ChapCredentials {
        user: "user1".into(),
        secret: b"secretpass12".to_vec(),
    });
    cfg.mutual_chap = Some(ChapCredentials {
        user: "iqn.target-auth".into(),
        secret: b"targetsecret34".to_vec(),
    });
    let mut c = Session::connect(t.addr(), cfg.clone(), options(false)).unwrap();
    c.test_unit_ready(Lun::default()).unwrap();
    c.logout().unwrap();
    // The target knows another secret: its CHAP_R is wrong.
    cfg.mutual_chap = Some(ChapCredentials {
        user: "iqn.target-auth".into(),
        secret: b"othersecret567".to_vec(),
    });
    match Session::connect(t.addr(), cfg.clone(), options(false)) {
        Err(Error::Connection(e @ ConnectionError::Chap(_))) => assert_eq!(
            e.to_string(),
            "CHAP: the target failed authentication: its CHAP_R does not answer the challenge \
             with the configured secret"
        ),
        other => panic!("expected the target to fail authentication, got {other:?}"),
    }
    // A target set for mutual CHAP refuses an initiator that does not challenge it.
    cfg.mutual_chap = None;
    assert!(matches!(
        Session::connect(t.addr(), cfg, options(false)),
        Err(Error::Connection(ConnectionError::LoginFailed {
            class: 2,
            detail: 1
        }))
    ));
}

#[test]
fn wrong_target_name_fails_login() {
    let t = target(|_| {});
    match Session::connect(t.addr(), config("iqn.nope:x", false), options(false)) {
        Err(Error::Connection(
            e @ ConnectionError::LoginFailed {
                class: 2,
                detail: 3,
            },
        )) => assert_eq!(e.to_string(), "login failed: Target not found (0203h)"),
        other => panic!("expected target not found, got {other:?}"),
    }
}

#[test]
fn discovery_inquiry_report_luns_ping_unit_attention_residual() {
    let t = target(|c| c.lun = 1);
    let found = Session::discover(t.addr(), INITIATOR, options(false)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, t.iqn());
    assert_eq!(found[0].addresses, vec![format!("{},1", t.addr())]);

    let lun = Lun::single_level(1);
    let mut c = Session::connect(t.addr(), config(t.iqn(), true), options(false)).unwrap();
    // The first command meets the unit attention; run() retried it, execute() shows it.
    let done = c
        .execute(ulp_iscsi::Command {
            lun,
            cdb: scsi::test_unit_ready(),
            data: Data::None,
        })
        .unwrap();
    assert!(done.result.unwrap().is_unit_attention());
    c.test_unit_ready(lun).unwrap();
    let inq = c.inquiry(lun).unwrap();
    assert_eq!(
        (inq.vendor.as_str(), inq.product.as_str()),
        ("ULPDDP", "RAMDISK")
    );
    assert_eq!(c.report_luns().unwrap(), vec![lun.0]);
    assert_eq!(c.ping(b"hello".to_vec()).unwrap(), b"hello");
    // INQUIRY into 96 bytes: the target has 36, an underflow of 60.
    let done = c
        .execute(ulp_iscsi::Command {
            lun,
            cdb: scsi::inquiry(96),
            data: Data::Read(SgBuffer::zeroed(96)),
        })
        .unwrap();
    let o = done.result.unwrap();
    assert_eq!((o.residual, o.data_in), (Residual::Underflow(60), 36));
    // Reading past the end: CHECK CONDITION, ILLEGAL REQUEST.
    let cap = c.read_capacity(lun).unwrap();
    match c.read(lun, cap.blocks(), SgBuffer::zeroed(cap.block_len as usize)) {
        Err(Error::Status {
            status: 2,
            sense: Some(s),
            buffer,
        }) => {
            assert_eq!(s.key, 5);
            // The read's buffer comes back with the error.
            assert_eq!(buffer.map(|b| b.len()), Some(u64::from(cap.block_len)));
        }
        other => panic!("expected ILLEGAL REQUEST, got {other:?}"),
    }
    // READ(16)/WRITE(16) beyond 16-bit transfer lengths, with a scattered buffer.
    let data = pattern(40 * 1024 * 1024 / 1024, 9);
    c.write(lun, 100, SgBuffer::from_vec(data.clone())).unwrap();
    let buf = SgBuffer::from_segments(vec![vec![0; 10_000], vec![0; 30_960]]);
    let got = c.read(lun, 100, buf).unwrap();
    assert_eq!(got.into_vec(), data[..]);
    let (cmd_sn, exp, max, _) = c.connection().sequence_numbers();
    assert!(
        ulp_iscsi::serial::le(exp, cmd_sn) && ulp_iscsi::serial::le(cmd_sn, max.wrapping_add(1))
    );
    c.logout().unwrap();
}

#[test]
fn pipelined_reads_respect_tag_depth() {
    let t = target(|c| c.unit_attention = false);
    let mut cfg = config(t.iqn(), false);
    cfg.queue_depth = 4;
    let mut c = Session::connect(t.addr(), cfg, options(false)).unwrap();
    c.set_block_len(Lun::default(), 512);
    c.write(Lun::default(), 0, SgBuffer::from_vec(pattern(64 * 1024, 3)))
        .unwrap();
    let ids: Vec<_> = (0..16u32)
        .map(|i| {
            c.submit(ulp_iscsi::Command {
                lun: Lun::default(),
                cdb: scsi::read_10(i * 8, 8),
                data: Data::Read(SgBuffer::zeroed(4096)),
            })
            .expect("submit")
        })
        .collect();
    assert!(c.connection().outstanding() <= 16);
    for (i, id) in ids.into_iter().enumerate() {
        let done = c.wait(id).unwrap();
        assert!(done.result.unwrap().is_good());
        let want = pattern(64 * 1024, 3);
        assert_eq!(
            done.buffer.unwrap().into_vec(),
            want[i * 4096..(i + 1) * 4096]
        );
    }
    assert_eq!(c.connection().engine().registered(), 0);
}

/// With `copy_small_payloads`, a 4 KiB read's Data-In comes through the receive buffer (copied,
/// many PDUs per socket read) while 128 KiB and 1 MiB reads are still read in place; every
/// read returns the data written, with digests on.
#[test]
fn small_payload_policy_copies_only_small_reads() {
    let t = target(|_| {});
    let mut c = Session::connect(t.addr(), config(t.iqn(), true), options(false)).unwrap();
    c.copy_small_payloads(16 * 1024);
    write_read_sizes(&mut c, Lun::default());
    let s = c.connection().engine().stats();
    // Only the 4 KiB read and the small SCSI replies (capacity) fall under the threshold.
    assert!(
        s.bytes_copied >= 4096 && s.bytes_copied < 16 * 1024,
        "{s:?}"
    );
    assert!(
        s.bytes_read_in_place >= (128 * 1024 + (1 << 20)) as u64,
        "{s:?}"
    );
    assert_eq!(s.digests_failed, 0);
    c.logout().unwrap();
}
