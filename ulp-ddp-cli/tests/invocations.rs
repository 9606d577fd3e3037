//! Every command line users and scripts rely on keeps working with the same meaning: each one
//! runs the built `ulp-ddp` against its embedded targets and must succeed and print what it
//! always printed.

use std::process::Command;

/// Runs `ulp-ddp args` and returns its standard output; fails the test, with what the tool
/// printed, if it exits with an error.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
        .args(args)
        .output()
        .expect("ulp-ddp starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ulp-ddp {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo() {
    let out = run(&["demo", "--commands", "8", "--max-len", "65536"]);
    assert!(out.starts_with("demo: 8 read commands"), "{out}");
    let verified = out
        .lines()
        .filter(|l| l.starts_with("copy ") || l.starts_with("reader "))
        .filter(|l| l.split_whitespace().nth(9) == Some("yes"))
        .count();
    assert_eq!(verified, 2, "both paths verified: {out}");
}

/// The row of the NVMe/TCP table for `op`: its commands, errors and mismatches.
fn nvme_row(out: &str, op: &str) -> (u64, u64, u64) {
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

#[test]
fn nvme_read_write_verify() {
    let out = run(&[
        "nvme", "read", "--size", "8192", "--count", "4", "--qd", "2",
    ]);
    assert_eq!(nvme_row(&out, "read"), (4, 0, 0), "{out}");
    assert!(out.contains("copied 0 B"), "{out}");
    let out = run(&[
        "nvme", "write", "--size", "8192", "--count", "4", "--qd", "2",
    ]);
    assert_eq!(nvme_row(&out, "write"), (4, 0, 0), "{out}");
    let out = run(&[
        "nvme",
        "verify",
        "--size",
        "4096",
        "--count",
        "4",
        "--digests",
    ]);
    assert_eq!(nvme_row(&out, "write"), (4, 0, 0), "{out}");
    assert_eq!(nvme_row(&out, "read"), (4, 0, 0), "{out}");
    assert!(
        out.contains("digests on") && out.contains("failed 0"),
        "{out}"
    );
}

#[test]
fn iscsi_read_write() {
    let out = run(&["iscsi", "read", "--len", "4096", "--lba", "8"]);
    assert!(out.contains("read 4096 bytes at LBA 8: crc32c 0x"), "{out}");
    let out = run(&[
        "iscsi",
        "write",
        "--len",
        "8192",
        "--lba",
        "16",
        "--digests",
    ]);
    assert!(out.contains("HeaderDigest=true DataDigest=true"), "{out}");
    assert!(
        out.contains("wrote and read back 8192 bytes at LBA 16: identical"),
        "{out}"
    );
}

#[test]
fn perf_modes_and_their_json() {
    for proto in ["nvme", "iscsi"] {
        let out = run(&[proto, "perf", "--bs", "4096", "--count", "64", "--json"]);
        assert!(out.contains("\"errors\":0"), "{proto}: {out}");
        assert!(out.contains("\"commands\":64"), "{proto}: {out}");
    }
    let out = run(&["tcp", "perf", "--bs", "4096", "--count", "64", "--json"]);
    assert!(out.contains("\"commands\":64"), "{out}");
}

#[test]
fn perf_compare() {
    let out = run(&["perf-compare", "--bs", "4096", "--count", "64"]);
    for proto in ["tcp", "tcp-rr", "nvme-tcp", "iscsi"] {
        let rows = out
            .lines()
            .filter(|l| l.starts_with(&format!("{proto} ")) && l.contains(" read "))
            .count();
        assert_eq!(rows, 3, "{proto}: one row per round (3 by default): {out}");
    }
    assert!(out.contains("medians of 3 rounds"), "{out}");
}
