//! Arbitrary target bytes into a logged-in initiator connection (plugin, receive engine,
//! session), cut at arbitrary points: no panic, the read buffer always comes back, whole and
//! registered nowhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SansIo;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_iscsi::wire::login::{LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::{Digests, Itt, Lun};
use ulp_iscsi::{Command, Connection, ConnectionConfig, ConnectionError, Data, Event, scsi};

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
    let mut config = ConnectionConfig::normal("iqn.i:x", "iqn.t:y");
    config.queue_id = QueueId(1);
    config.queue_depth = 8;
    let digests = control & 1 == 1;
    if digests {
        config.wanted.header_digest = ulp_iscsi::keys::DigestPref::Require;
        config.wanted.data_digest = ulp_iscsi::keys::DigestPref::Require;
    }
    let mut c = Connection::new(config, SwBackend::new());
    if c.start_login().is_err() {
        return;
    }
    let Some(first) = c.poll_transmit().map(|t| t.parts()[0].to_vec()) else {
        return;
    };
    let itt = u32::from_be_bytes([first[16], first[17], first[18], first[19]]);
    // Every offered key answered (RFC 7143 §6.2.1 requires answers).
    let digest = if digests { "CRC32C" } else { "None" };
    let keys = format!(
        "HeaderDigest={digest}\0DataDigest={digest}\0InitialR2T=Yes\0ImmediateData=Yes\0\
         MaxBurstLength=262144\0FirstBurstLength=65536\0ErrorRecoveryLevel=0\0\
         MaxConnections=1\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0MaxOutstandingR2T=1\0\
         DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0"
    );
    let keys = keys.as_bytes();
    c.handle_bytes(&login_response(
        itt,
        Stage::Security,
        Stage::Operational,
        b"",
    ));
    c.handle_bytes(&login_response(
        itt,
        Stage::Operational,
        Stage::FullFeature,
        keys,
    ));
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, 8),
        data: Data::Read(SgBuffer::from_segments(vec![
            vec![0xEE; 1000],
            vec![0xEE; 3096],
        ])),
    });
    while c.poll_transmit().is_some() {}
    let cut = usize::from(control >> 2).max(1);
    for piece in rest.chunks(cut) {
        c.handle_bytes(piece);
        while c.poll_transmit().is_some() {}
    }
    c.fail(ConnectionError::PeerClosed);
    let mut back = false;
    while let Some(e) = c.poll_event() {
        if let Event::Completed(done) = e
            && done.id == id
        {
            assert_eq!(done.buffer.expect("buffer").len(), 4096);
            back = true;
        }
    }
    assert!(back, "the read never completed");
    assert_eq!(c.engine().registered(), 0);
});
