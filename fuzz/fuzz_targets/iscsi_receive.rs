//! Arbitrary target bytes into a logged-in initiator connection (plugin, receive engine,
//! session), cut at arbitrary points: no panic, the read buffer always comes back, whole and
//! registered nowhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_iscsi::wire::login::{LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::{Digests, Itt, Lun};
use ulp_iscsi::{Command, ConnError, Connection, DataDir, LoginConfig, SessionEvent, scsi};

fn login_response(itt: u32, current: Stage, next: Stage, keys: &[u8]) -> Vec<u8> {
    let r = LoginResponseRepr {
        stages: Stages {
            cont: false,
            current,
            next: Some(next),
        },
        version_max: 0,
        version_active: 0,
        isid: [0x80, 0x12, 0x34, 0x56, 0, 1],
        tsih: 1,
        itt: Itt(itt),
        stat_sn: 100,
        exp_cmd_sn: 1,
        max_cmd_sn: 64,
        status_class: 0,
        status_detail: 0,
        data: keys,
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    let _ = r.emit(&mut b, Digests::NONE);
    b
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let mut config = LoginConfig::normal("iqn.i:x", "iqn.t:y");
    let digests = control & 1 == 1;
    if digests {
        config.wanted.header_digest = ulp_iscsi::keys::DigestPref::Require;
        config.wanted.data_digest = ulp_iscsi::keys::DigestPref::Require;
    }
    let mut c = Connection::new(config, SwBackend::new(), QueueId(1), 8);
    if c.start_login().is_err() {
        return;
    }
    let Some(first) = c.poll_transmit() else {
        return;
    };
    let itt = u32::from_be_bytes([
        first.header[16],
        first.header[17],
        first.header[18],
        first.header[19],
    ]);
    let keys: &[u8] = if digests {
        b"HeaderDigest=CRC32C\0DataDigest=CRC32C\0"
    } else {
        b""
    };
    let _ = c.receive(&login_response(
        itt,
        Stage::Security,
        Stage::Operational,
        b"",
    ));
    let _ = c.receive(&login_response(
        itt,
        Stage::Operational,
        Stage::FullFeature,
        keys,
    ));
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, 8),
        data: DataDir::Read(SgBuffer::from_segments(vec![
            vec![0xEE; 1000],
            vec![0xEE; 3096],
        ])),
    });
    while c.poll_transmit().is_some() {}
    let cut = usize::from(control >> 2).max(1);
    for piece in rest.chunks(cut) {
        let _ = c.receive(piece);
        while c.poll_transmit().is_some() {}
    }
    c.fail(ConnError::Closed);
    let mut back = false;
    while let Some(e) = c.poll_event() {
        if let SessionEvent::Completed(done) = e
            && done.id == id
        {
            assert_eq!(done.buffer.expect("buffer").len(), 4096);
            back = true;
        }
    }
    assert!(back, "the read never completed");
    assert_eq!(c.engine().registered(), 0);
});
