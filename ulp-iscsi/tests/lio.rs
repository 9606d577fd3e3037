//! The real kernel peer: LIO in the Linux target VM (`scripts/vm`, qemu TCG), booted once for
//! this test binary and killed by a guard at the end (also on failure). The initiator offers
//! the full operational key set up front, so LIO has nothing to propose: one operational
//! exchange, and LIO's log (the guest's dmesg) has no `No response for proposed key`. A login
//! offering less (`Wanted::offer_all = false`) shows the check sees that message. Then mutual
//! CHAP, and a session LIO drops (the TPG disabled and enabled through configfs) is reinstated.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

mod common;

use std::time::Duration;

use common::*;
use ulp_iscsi::ConnectionError;
use ulp_iscsi::SgBuffer;
use ulp_iscsi::blocking::{Error, Options, Session, SessionEvent};
use ulp_iscsi::connection::ChapCredentials;
use ulp_iscsi::wire::{Digests, Lun};
use ulp_testbed::peers::{have, tshark_iscsi};
use ulp_testbed::vm::{self, Vm};

/// LIO's complaint when it proposed a key and the initiator's next request had no answer
/// (logged at error level; each one costs an extra login exchange).
const NO_RESPONSE: &str = "No response for proposed key";

/// Waits until the control channel answers (its first request right after boot is sometimes
/// not answered; a bounded number of short tries).
fn control_ready(vm: &Vm) {
    let mut last = String::new();
    for _ in 0..6 {
        match vm.run("echo ready", Duration::from_secs(10)) {
            Ok((0, out)) if out.contains("ready") => return,
            Ok(other) => last = format!("{other:?}"),
            Err(e) => last = e,
        }
    }
    panic!("the VM's control channel does not answer: {last}");
}

fn iqn_of(vm: &Vm) -> String {
    vm.value("IQN").expect("IQN").to_string()
}

/// The guest's kernel log since the last call (read and cleared), its iSCSI lines only (the
/// control channel is slow: about 30 KB/s).
fn take_dmesg(vm: &Vm) -> String {
    let (status, out) = vm
        .run(
            "dmesg -c > /tmp/k.log; grep -i -e iscsi -e 'proposed key' /tmp/k.log | tail -n 60; true",
            Duration::from_secs(60),
        )
        .expect("dmesg in the VM");
    assert_eq!(status, 0, "dmesg -c: {out}");
    out
}

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
    // LIO declares 262144; it had no key left to propose: one operational exchange.
    assert_eq!(p.max_xmit_data_segment_len, 262_144);
    assert_eq!(
        c.connection().operational_rounds(),
        1,
        "{} operational exchanges",
        c.connection().operational_rounds()
    );
    assert_eq!(c.connection().login_rounds(), 2, "security, operational");
    // The keys LIO left unanswered, as RFC 7143 §6.2.1 allows, settled by the offer.
    assert!(p.data_pdu_in_order && p.data_sequence_in_order);
    assert_eq!((p.default_time2wait, p.default_time2retain), (2, 0));
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
    control_ready(&vm);
    take_dmesg(&vm);
    scenario(&vm, false);
    scenario(&vm, true);
    let log = take_dmesg(&vm);
    println!("LIO log after the full-offer logins:\n{log}");
    assert!(!log.contains(NO_RESPONSE), "LIO complained:\n{log}");

    // A discovery session: LIO answers the discovery offer and lists the target.
    let found = Session::discover(
        ("127.0.0.1", vm.port("ISCSI_PORT").expect("ISCSI_PORT")),
        INITIATOR,
        options(false),
    )
    .expect("discovery login and SendTargets");
    assert!(found.iter().any(|t| t.name == iqn_of(&vm)), "{found:?}");
    let log = take_dmesg(&vm);
    assert!(!log.contains(NO_RESPONSE), "LIO complained:\n{log}");

    // The control: the old, short offer. LIO proposes the rest (a second exchange) and says
    // so in its log, so the check above can see the message.
    let iqn = vm.value("IQN").expect("IQN");
    let mut cfg = config(iqn, false);
    cfg.wanted.offer_all = false;
    let mut c = Session::connect(
        ("127.0.0.1", vm.port("ISCSI_PORT").expect("ISCSI_PORT")),
        cfg,
        options(false),
    )
    .expect("login to LIO with the short offer");
    assert_eq!(c.connection().operational_rounds(), 2);
    c.test_unit_ready(Lun::single_level(0))
        .expect("TEST UNIT READY");
    c.logout().expect("logout");
    let log = take_dmesg(&vm);
    println!("LIO log after the short-offer login:\n{log}");
    assert!(log.contains(NO_RESPONSE), "{log}");

    mutual_chap(&vm);
    dropped_by_the_target_and_reinstated(&vm);
}

/// Mutual CHAP against LIO (the TPG's own credentials, set through configfs over the control
/// channel): the initiator authenticates and LIO answers the initiator's challenge; with a
/// wrong target secret configured on the host the login fails, saying the target failed
/// authentication.
fn mutual_chap(vm: &Vm) {
    let iqn = iqn_of(vm);
    let g = format!("/sys/kernel/config/target/iscsi/{iqn}/tpgt_1");
    let set = format!(
        "printf user1 > {g}/auth/userid; printf secretpass12 > {g}/auth/password; \
         printf iqn.lio-target > {g}/auth/userid_mutual; \
         printf targetsecret34 > {g}/auth/password_mutual; echo 1 > {g}/attrib/authentication"
    );
    let (status, out) = vm.run(&set, Duration::from_secs(20)).expect("configfs");
    assert_eq!(status, 0, "{out}");
    let addr = ("127.0.0.1", vm.port("ISCSI_PORT").expect("ISCSI_PORT"));
    let mut cfg = config(&iqn, false);
    cfg.chap = Some(ChapCredentials {
        user: "user1".into(),
        secret: b"secretpass12".to_vec(),
    });
    cfg.mutual_chap = Some(ChapCredentials {
        user: "iqn.lio-target".into(),
        secret: b"targetsecret34".to_vec(),
    });
    let mut c = match Session::connect(addr, cfg.clone(), options(false)) {
        Ok(c) => c,
        Err(e) => panic!(
            "mutual CHAP login: {e}; LIO says:\n{:?}",
            vm.run("dmesg -c | tail -n 30", Duration::from_secs(30))
        ),
    };
    assert_eq!(c.connection().operational_rounds(), 1);
    c.test_unit_ready(Lun::single_level(0))
        .expect("TEST UNIT READY");
    c.logout().expect("logout");
    cfg.mutual_chap = Some(ChapCredentials {
        user: "iqn.lio-target".into(),
        secret: b"notthesecret".to_vec(),
    });
    match Session::connect(addr, cfg, options(false)) {
        Err(Error::Connection(e @ ConnectionError::Chap(_))) => assert!(
            e.to_string().contains("the target failed authentication"),
            "{e}"
        ),
        other => panic!("expected the target to fail authentication, got {other:?}"),
    }
    let (status, out) = vm
        .run(
            &format!("echo 0 > {g}/attrib/authentication"),
            Duration::from_secs(20),
        )
        .expect("configfs");
    assert_eq!(status, 0, "{out}");
}
