//! The initiator against Debian's tgtd (started and stopped here), with tshark checking the
//! captured traffic.

mod common;

use common::*;
use ulp_iscsi::blocking::Session;
use ulp_iscsi::wire::{Digests, Lun};
use ulp_testbed::peers::{Tgtd, peer_available, tshark_iscsi};

fn run(digests: bool) {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let tgtd = Tgtd::start(8 << 20, "CRC32C,None");
    let mut c = Session::connect(
        ("127.0.0.1", tgtd.port),
        config(&tgtd.iqn, digests),
        options(true),
    )
    .expect("login to tgtd");
    let p = c.connection().params().clone();
    assert_eq!((p.header_digest, p.data_digest), (digests, digests));
    let lun = Lun::single_level(1);
    let inq = c.inquiry(lun).expect("INQUIRY");
    assert_eq!(inq.vendor, "IET");
    write_read_sizes(&mut c, lun);
    assert_eq!(c.ping(b"ulp-ddp".to_vec()).expect("ping"), b"ulp-ddp");
    let stats = c.connection().engine().stats();
    assert_eq!(stats.bytes_copied, 0, "{stats:?}");
    let (client_port, port) = c.ports();
    c.logout().expect("logout");
    if peer_available("tshark") {
        let capture = c.capture().expect("capture").to_vec();
        let d = Digests {
            header: digests,
            data: digests,
        };
        let n = tshark_iscsi(&capture, client_port, port, d);
        assert!(n > 20, "only {n} PDUs");
    }
}

/// A discovery session: tgtd answers the discovery offer (digests, receive length) as RFC 7143
/// §6 requires, and lists the target.
#[test]
fn tgtd_discovery() {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let tgtd = Tgtd::start(8 << 20, "CRC32C,None");
    let found = Session::discover(("127.0.0.1", tgtd.port), INITIATOR, options(false))
        .expect("discovery login and SendTargets");
    assert!(found.iter().any(|t| t.name == tgtd.iqn), "{found:?}");
}

#[test]
fn tgtd_digests_off() {
    run(false);
}

#[test]
fn tgtd_crc32c_header_and_data_digests() {
    run(true);
}
