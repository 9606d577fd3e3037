//! Runs the iSCSI examples (built by `cargo test` into target/<profile>/examples/) against the
//! embedded iSCSI target and checks what they print.

mod common;

use std::process::Command;

use common::{example, run};
use ulp_testbed::iscsi::{Target, TargetConfig};

#[test]
fn iscsi_read_reads_1_mib_from_a_url_and_from_an_address_and_iqn() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let want = format!(
        "read 1048576 bytes from LBA 0 of {} LUN 0: 0 non-zero\n",
        t.iqn()
    );
    assert_eq!(run("iscsi_read", &[&t.url()]), want);
    assert_eq!(run("iscsi_read", &[&t.addr().to_string(), t.iqn()]), want);
}

#[test]
fn iscsi_read_without_a_target_says_how_to_use_it() {
    let out = Command::new(example("iscsi_read"))
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("usage: iscsi_read"), "{stderr}");
}

#[test]
fn iscsi_tokio_writes_and_reads_back_4_mib_from_8_tasks() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let out = run("iscsi_tokio", &[&t.url()]);
    assert!(
        out.starts_with("wrote 4 MiB in ") && out.ends_with(" from 8 tasks: identical\n"),
        "{out}"
    );
    print!("{out}");
    // What the tasks wrote is on the LUN: chunk 3's first bytes.
    let chunk = (4 << 20) / 8;
    assert_eq!(t.contents(3 * chunk, 4), vec![93u8; 4]);
}
