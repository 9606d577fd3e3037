//! The real kernel peer: LIO in the Linux target VM (`scripts/vm`, qemu TCG), booted once for
//! this test binary and killed by a guard at the end (also on failure). LIO proposes session
//! keys with T=0, so the login takes several rounds.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

mod common;

use std::time::Duration;

use common::*;
use ulp_iscsi::SgBuffer;
use ulp_iscsi::blocking::{Options, Session, SessionEvent};
use ulp_iscsi::wire::{Digests, Lun};
use ulp_testbed::peers::{have, tshark_iscsi};

use ulp_testbed::vm::{self, Vm};

fn scenario(vm: &Vm, digests: bool) {
    let iqn = vm.value("IQN").expect("IQN");
    let mut c = Session::connect(
        ("127.0.0.1", vm.port("ISCSI_PORT").expect("ISCSI_PORT")),
        config(iqn, digests),
        options(true),
    )
    .expect("login to LIO");
    let p = c.connection().params().clone();
    assert_eq!((p.header_digest, p.data_digest), (digests, digests));
    // LIO declares 262144 and proposed the session keys the initiator did not offer.
    assert_eq!(p.max_xmit_data_segment_len, 262_144);
    assert!(
        c.connection().login_rounds() >= 3,
        "{} login rounds",
        c.connection().login_rounds()
    );
    let lun = Lun::single_level(0);
    let inq = c.inquiry(lun).expect("INQUIRY");
    assert_eq!(inq.vendor, "LIO-ORG");
    write_read_sizes(&mut c, lun);
    let s = c.connection().engine().stats();
    assert_eq!(s.bytes_copied, 0, "{s:?}");
    let (client_port, port) = c.ports();
    c.logout().expect("logout");
    if have("tshark") {
        let capture = c.capture().expect("capture").to_vec();
        tshark_iscsi(
            &capture,
            client_port,
            port,
            Digests {
                header: digests,
                data: digests,
            },
        );
    }
}

/// LIO drops the session (the TPG disabled through configfs, then enabled again): the host
/// reinstates it and the read after it returns what was written before.
fn dropped_by_the_target_and_reinstated(vm: &Vm) {
    let iqn = vm.value("IQN").expect("IQN");
    let mut cfg = config(iqn, false);
    // TCG is slow: a ping every second, two to answer.
    cfg.noop_interval = Some(Duration::from_secs(1));
    cfg.noop_timeout = Duration::from_secs(2);
    let mut o = Options::default();
    o.reconnect_delay = Duration::from_secs(1);
    o.login_timeout = Duration::from_secs(5);
    o.replacement_timeout = Duration::from_secs(30);
    let mut c = Session::connect(
        ("127.0.0.1", vm.port("ISCSI_PORT").expect("ISCSI_PORT")),
        cfg,
        o,
    )
    .expect("login to LIO");
    let tsih = c.connection().tsih();
    let lun = Lun::single_level(0);
    c.test_unit_ready(lun).expect("TEST UNIT READY");
    c.read_capacity(lun).expect("READ CAPACITY");
    let data = pattern(256 * 1024, 9);
    c.write(lun, 64, SgBuffer::from_vec(data.clone()))
        .expect("write before the drop");
    let g = format!("/sys/kernel/config/target/iscsi/{iqn}/tpgt_1");
    let (code, out) = vm
        .run(
            &format!("echo 0 > {g}/enable; sleep 1; echo 1 > {g}/enable; cat {g}/enable"),
            Duration::from_secs(30),
        )
        .expect("configfs");
    assert_eq!((code, out.trim()), (0, "1"), "{out}");
    println!("(LIO's TPG disabled for 1 s and enabled again: its sessions dropped)");
    let back = c
        .read(lun, 64, SgBuffer::zeroed(data.len()))
        .expect("read after the drop")
        .into_vec();
    let events = c.take_events();
    for e in &events {
        println!("{e}");
    }
    assert!(back == data, "read back after the reinstatement differs");
    assert!(c.reinstatements() >= 1, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Reinstated { .. })),
        "{events:?}"
    );
    println!("reinstated: TSIH {tsih} -> {}", c.connection().tsih());
    c.logout().expect("logout");
}

#[test]
fn linux_lio_target() {
    let vm = match vm::boot(&vm::repo_root(), "iscsi") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("LIO", &why),
    };
    scenario(&vm, false);
    scenario(&vm, true);
    dropped_by_the_target_and_reinstated(&vm);
}
