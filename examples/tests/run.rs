//! Runs each example binary (built by `cargo test` into `target/<profile>/examples/`) against
//! the embedded targets of the test bed and checks that it succeeds and what it prints.

use std::path::PathBuf;
use std::process::Command;

use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Options};
use ulp_testbed::nvme::{Target, TargetConfig};

/// `target/<profile>/examples/NAME`: this test runs from `target/<profile>/deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/run-HASH");
    profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs example `name` with `args`; returns its standard output, failing on a failed exit.
fn run(name: &str, args: &[&str]) -> String {
    let path = example(name);
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn nvme_read_reads_what_is_there_by_url_and_by_address() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut ctrl =
        Controller::connect(target.addr(), &Options::new(target.subnqn())).expect("connect");
    let first: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8 ^ 0xA5).collect();
    ctrl.write(0, SgBuffer::from_vec(first)).expect("write");
    ctrl.close().expect("close");
    let addr = target.addr().to_string();
    let url = format!("nvme-tcp://{addr}/{}", target.subnqn());
    for args in [vec![url.as_str()], vec![addr.as_str(), target.subnqn()]] {
        let out = run("nvme_read", &args);
        println!("{out}");
        assert!(out.contains("read 1048576 bytes at LBA 0"), "{out}");
        assert!(
            out.contains(
                "first 16: [a5, a4, a7, a6, a1, a0, a3, a2, ad, ac, af, ae, a9, a8, ab, aa]"
            ),
            "{out}"
        );
    }
}

#[test]
fn nvme_tokio_writes_and_reads_back_4_mib() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let out = run("nvme_tokio", &[&target.addr().to_string(), target.subnqn()]);
    println!("{out}");
    assert!(
        out.contains("8 tasks over 4 I/O queues, digests on: wrote 4 MiB at"),
        "{out}"
    );
    assert!(out.contains("data identical"), "{out}");
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}
