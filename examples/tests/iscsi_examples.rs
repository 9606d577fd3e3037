//! Runs the iSCSI examples (built by `cargo test` into target/<profile>/examples/) against the
//! embedded iSCSI target and checks what they print.

use std::path::PathBuf;
use std::process::{Command, Output};

use ulp_testbed::iscsi::{Target, TargetConfig};

/// The example binary `name`, next to this test's own directory (target/<profile>/deps).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(example(name))
        .args(args)
        .output()
        .expect("run the example");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
    );
    assert!(
        status.success(),
        "{name} {args:?}: {status}\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

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
