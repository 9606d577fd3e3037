//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

use ulp_iscsi::ConnectionConfig;
use ulp_iscsi::SgBuffer;
use ulp_iscsi::blocking::{Options, Session};
use ulp_iscsi::keys::DigestPref;
use ulp_iscsi::wire::login::{LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::{Digests, Itt, Lun};

pub const INITIATOR: &str = "iqn.2024-01.io.ulp-ddp:test-initiator";

pub fn config(target: &str, digests: bool) -> ConnectionConfig {
    let mut c = ConnectionConfig::normal(INITIATOR, target);
    if digests {
        c.wanted.header_digest = DigestPref::Require;
        c.wanted.data_digest = DigestPref::Require;
    }
    c
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ seed)
        .collect()
}

/// The acceptance sequence: capacity, then write and read back 4 KiB, 128 KiB and 1 MiB.
pub fn write_read_sizes(c: &mut Session, lun: Lun) {
    c.test_unit_ready(lun).expect("TEST UNIT READY");
    let cap = c.read_capacity(lun).expect("READ CAPACITY(16)");
    assert!(cap.block_len >= 512 && cap.bytes() >= 2 << 20, "{cap:?}");
    let bl = cap.block_len;
    let mut lba = 0u64;
    for (i, size) in [4096usize, 128 * 1024, 1 << 20].into_iter().enumerate() {
        let data = pattern(size, i as u8 + 1);
        c.write(lun, lba, SgBuffer::from_vec(data.clone()))
            .expect("write");
        let back = c
            .read(lun, lba, SgBuffer::zeroed(size))
            .expect("read")
            .into_vec();
        assert!(back == data[..], "read back of {size} bytes differs");
        lba += (size / bl as usize) as u64;
    }
    c.synchronize_cache(lun).expect("SYNCHRONIZE CACHE");
}

pub fn options(capture: bool) -> Options {
    let mut o = Options::default();
    o.capture = capture;
    o
}

/// Options with session reinstatement off: a connection's end reaches the caller as it is
/// (what the hostile-target tests examine).
pub fn options_without_reinstatement() -> Options {
    let mut o = Options::default();
    o.reinstate = false;
    o
}

/// A target's answers to every key of the initiator's default offer (RFC 7143 §6.2.1: only an
/// OR key offered as Yes or an AND key offered as No may go unanswered).
pub const ANSWERS: &[u8] = b"HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0\
InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=262144\0FirstBurstLength=65536\0\
ErrorRecoveryLevel=0\0MaxConnections=1\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0\
MaxOutstandingR2T=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0";

/// A Login Response from stage `current` to `next` answering the request with `itt`, as the
/// sans-IO tests' target sends it: the default configuration's ISID, TSIH 7 once in full
/// feature phase, StatSN 100, ExpCmdSN 1, MaxCmdSN `max_cmd_sn`, and `text` as its keys.
pub fn login_response(
    itt: u32,
    current: Stage,
    next: Stage,
    max_cmd_sn: u32,
    text: &[u8],
) -> Vec<u8> {
    let r = LoginResponseRepr {
        stages: Stages {
            cont: false,
            current,
            next: Some(next),
        },
        version_max: 0,
        version_active: 0,
        isid: [0x80, 0x12, 0x34, 0x56, 0, 1],
        tsih: if next == Stage::FullFeature { 7 } else { 0 },
        itt: Itt(itt),
        stat_sn: 100,
        exp_cmd_sn: 1,
        max_cmd_sn,
        status_class: 0,
        status_detail: 0,
        data: text,
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    r.emit(&mut b, Digests::NONE)
        .expect("a Login Response fits its buffer");
    b
}
