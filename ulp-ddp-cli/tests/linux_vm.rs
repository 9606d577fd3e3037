//! The `ulp-ddp nvme` tool against the Linux NVMe/TCP target (nvmet-tcp) in the VM, on the
//! paths that take time and faults: the target's port unlinked and linked again in the middle
//! of a `verify` at QD 32 (the host reconnects, every byte verifies, the reconnect is printed),
//! transfers larger than one command (8 MiB and 64 MiB, split by the transport cap), `discover`,
//! `verify` over four I/O queues, and a file written with `write --lba 100 --in f` read back
//! with `read --lba 100 --out - | cmp - f`.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ulp_testbed::vm::{self, Vm};

mod common;

use common::tool;

/// The row of the table for `op`: commands, errors, mismatches.
fn row(out: &str, op: &str) -> (u64, u64, u64) {
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(op))
        .unwrap_or_else(|| panic!("no {op} row in:\n{out}"));
    let f: Vec<&str> = row.split_whitespace().collect();
    let n = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("{s:?} in {row:?}"))
    };
    (n(f[1]), n(f[f.len() - 2]), n(f[f.len() - 1]))
}

fn verify_ok(url: &str, extra: &[&str], count: u64) -> (String, String) {
    let mut args = vec!["nvme", "verify", url];
    args.extend_from_slice(extra);
    let t = Instant::now();
    let (ok, out, err) = tool(&args);
    println!(
        "ulp-ddp {} ({:.1} s):\n{out}{err}",
        args.join(" "),
        t.elapsed().as_secs_f64()
    );
    assert!(ok, "verify failed:\n{out}\n{err}");
    assert_eq!(row(&out, "write"), (count, 0, 0), "{out}");
    assert_eq!(row(&out, "read"), (count, 0, 0), "{out}");
    (out, err)
}

/// (a) The port goes away for a while during a verify at QD 32 and comes back.
fn reconnect_mid_verify(vm: &Vm, url: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
        .args([
            "nvme",
            "verify",
            url,
            "--qd",
            "32",
            "--size",
            "65536",
            "--count",
            "1024",
            "--reconnect-delay",
            "0.5",
            "--ctrl-loss-tmo",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ulp-ddp starts");
    let err = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&err);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    // Wait until the write phase is under way (its progress line), bounded.
    let start = Instant::now();
    while !err.lock().map(|s| s.contains("write ")).unwrap_or(false) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress from verify"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "verify ended too soon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = vm.nvme_port_disable().expect("disable");
    println!(
        "mid-verify after {:.1} s: {}",
        start.elapsed().as_secs_f64(),
        said.trim()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let said = vm.nvme_port_enable().expect("enable");
    println!(
        "after {:.1} s: {}",
        start.elapsed().as_secs_f64(),
        said.trim()
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("verify did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let err = err.lock().map(|s| s.clone()).unwrap_or_default();
    println!("verify with the port unlinked for 1.5 s:\n{out}{err}");
    assert!(status.success(), "verify failed:\n{out}\n{err}");
    assert!(err.contains("resetting the controller"), "{err}");
    assert!(err.contains("reconnected after"), "{err}");
    assert!(out.contains("reconnected "), "{out}");
    assert_eq!(row(&out, "write"), (1024, 0, 0), "{out}");
    assert_eq!(row(&out, "read"), (1024, 0, 0), "{out}");
}

#[test]
fn ulp_ddp_nvme_against_linux() {
    let vm = match vm::boot(&vm::repo_root(), "cli") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("Linux NVMe/TCP target VM", &why),
    };
    let port = vm.port("NVME_PORT").expect("NVME_PORT");
    let nqn = vm.value("NQN").expect("NQN").to_string();
    let url = format!("nvme-tcp://127.0.0.1:{port}/{nqn}/1");

    // (d) discover lists the subsystem.
    let (ok, out, err) = tool(&["nvme", "discover", &format!("nvme-tcp://127.0.0.1:{port}")]);
    println!("ulp-ddp nvme discover:\n{out}{err}");
    assert!(ok, "{err}");
    assert!(out.contains(&format!("subnqn:  {nqn}")), "{out}");
    assert!(out.contains("subtype: nvme subsystem"), "{out}");

    // (c) 8 MiB and 64 MiB transfers, each split into commands of the transport cap.
    let (out, _) = verify_ok(&url, &["--size", "8388608", "--count", "2", "--qd", "2"], 2);
    assert!(out.contains("1024 KiB per command at most"), "{out}");
    verify_ok(
        &url,
        &["--size", "67108864", "--count", "1", "--qd", "1"],
        1,
    );

    // (e) four I/O queues.
    let (out, _) = verify_ok(
        &url,
        &[
            "--queues", "4", "--qd", "32", "--size", "65536", "--count", "256",
        ],
        256,
    );
    assert!(out.contains("4 I/O queues"), "{out}");

    // (f) a file written at LBA 100 reads back the same through stdout.
    round_trip(&url);

    // (a) the port unlinked and linked again in the middle of a verify.
    reconnect_mid_verify(&vm, &url);
}

/// (f) `ulp-ddp nvme write --lba 100 --in f URL`, then `ulp-ddp nvme read --lba 100 --blocks N
/// --out - URL | cmp - f`, as a user checks data on a real target.
fn round_trip(url: &str) {
    // One block read to standard output tells the block size.
    let (ok, block, err) = common::tool_bytes(&[
        "nvme", "read", "--lba", "0", "--blocks", "1", "--out", "-", url,
    ]);
    assert!(ok && !block.is_empty(), "read one block: {err}");
    common::write_then_read_to_cmp("nvme", url, block.len());
}
