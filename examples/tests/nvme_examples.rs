//! Runs the NVMe/TCP example binaries (built by `cargo test` into `target/<profile>/examples/`)
//! against the embedded target of the test bed and checks that each succeeds and what it prints.

mod common;

use common::run;
use ulp_nvme_tcp::{Controller, Options, SgBuffer};
use ulp_testbed::nvme::{Target, TargetConfig};

#[test]
fn nvme_read_reads_what_is_there() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut ctrl =
        Controller::connect(target.addr(), &Options::new(target.subnqn())).expect("connect");
    let first: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8 ^ 0xA5).collect();
    ctrl.write(0, SgBuffer::from_vec(first)).expect("write");
    ctrl.close().expect("close");
    let url = format!("nvme-tcp://{}/{}/1", target.addr(), target.subnqn());
    let out = run("nvme_read", &[&url]);
    println!("{out}");
    assert!(out.contains("read 1048576 bytes at LBA 0"), "{out}");
    assert!(
        out.contains("first 16: [a5, a4, a7, a6, a1, a0, a3, a2, ad, ac, af, ae, a9, a8, ab, aa]"),
        "{out}"
    );
}

#[test]
fn nvme_tokio_writes_and_reads_back_4_mib() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let url = format!("nvme-tcp://{}/{}/1", target.addr(), target.subnqn());
    let out = run("nvme_tokio", &[&url]);
    println!("{out}");
    assert!(
        out.contains("8 tasks over 4 I/O queues, digests on: wrote 4 MiB at"),
        "{out}"
    );
    assert!(out.contains("data identical"), "{out}");
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}
