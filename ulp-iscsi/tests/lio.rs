//! The real kernel peer: LIO in the Linux target VM (`scripts/vm`, qemu TCG), booted once for
//! this test binary and killed by a guard at the end (also on failure). LIO proposes session
//! keys with T=0, so the login takes several rounds.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

mod common;

use common::*;
use ulp_iscsi::blocking::Session;
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

#[test]
fn linux_lio_target() {
    let vm = match vm::boot(&vm::repo_root(), "iscsi") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("LIO", &why),
    };
    scenario(&vm, false);
    scenario(&vm, true);
}
