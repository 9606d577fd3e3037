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

#[test]
fn perf_compare_tls_adds_the_nvme_tls_row_and_the_aes_limit() {
    let out = run(&[
        "perf-compare",
        "--tls",
        "--bs",
        "4096",
        "--count",
        "64",
        "--repeat",
        "1",
        "--digests",
        "--no-progress",
    ]);
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("nvme-tls ") && l.contains(" read "))
        .collect();
    assert_eq!(rows.len(), 1, "one nvme-tls row per round: {out}");
    assert!(
        rows[0].split_whitespace().nth(5) == Some("64"),
        "the row counts the 64 commands: {out}"
    );
    let aes = out
        .lines()
        .find(|l| l.starts_with("AES-128-GCM limit: "))
        .unwrap_or_else(|| panic!("the AES-128-GCM line: {out}"));
    let gbps: f64 = aes
        .trim_start_matches("AES-128-GCM limit: ")
        .split_whitespace()
        .next()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("a figure (openssl is installed here): {aes}"));
    assert!(gbps > 0.0, "{aes}");
    assert!(aes.contains("same machine"), "{aes}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("nvme-tls vs nvme-tcp: ")
                && l.contains("x the AES-128-GCM limit")),
        "the TLS ratios: {out}"
    );
    // The default run stays without TLS.
    let plain = run(&[
        "perf-compare",
        "--bs",
        "4096",
        "--count",
        "16",
        "--repeat",
        "1",
    ]);
    assert!(!plain.contains("nvme-tls"), "{plain}");
    assert!(!plain.contains("AES-128-GCM"), "{plain}");
}

/// Runs `ulp-ddp args` with `stdin` as its standard input; returns (exit code, stdout, stderr).
fn run_raw(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ulp-ddp starts");
    if let Some(data) = stdin {
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(data).expect("feed stdin");
    }
    let out = child.wait_with_output().expect("ulp-ddp runs");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_old_command_line_still_parses() {
    use ulp_ddp_cli::cli::Cli;
    let table = [
        "--commands 8 --max-len 65536",
        "demo --commands 8 --max-len 65536 --piece 4096 --no-digests --no-corrupt --seed 3",
        "--commands 8 demo",
        "nvme read --size 8192 --count 4 --qd 2",
        "nvme write --size 8192 --count 4 --qd 2",
        "nvme verify --size 4096 --count 4 --digests",
        "nvme verify --digests --count 32",
        "nvme --size 4096 verify",
        "nvme verify --digests nvme-tcp://127.0.0.1:4420/nqn.x:y/1",
        "nvme verify nvme-tcp://127.0.0.1:4420/nqn.x:y/1 --qd 32 --size 65536 --count 1024 --reconnect-delay 0.5 --ctrl-loss-tmo 60",
        "nvme verify --queues 4 --qd 32 --size 65536 --count 256",
        "nvme verify --nr-io-queues 4 --keep-alive-tmo 0 --io-timeout 2",
        "nvme discover",
        "nvme discover nvme-tcp://127.0.0.1:4420 --digests",
        "nvme perf --bs 4096 --count 64 --json",
        "nvme perf --bs 65536 --qd 4 --seconds 1 --write --digests --copy-below 8192 --no-progress --queues 2",
        "iscsi read --len 4096 --lba 8",
        "iscsi read --len 4096 --out /tmp/x",
        "iscsi write --len 8192 --lba 16 --digests",
        "iscsi write --digests --len 1048576",
        "iscsi write --in /tmp/x --initiator iqn.2024-01.a:b",
        "iscsi verify iscsi://127.0.0.1:3260/iqn.x:y/1 --bs 65536 --count 16 --qd 16 --passes 2 --noop-interval 1 --noop-timeout 1 --task-timeout 2 --replacement-timeout 5 --reconnect-delay 1 --login-timeout 3",
        "iscsi perf --bs 4096 --count 64 --json",
        "iscsi perf iscsi://u%s@127.0.0.1/iqn.x:y/0 --digests --initiator iqn.a:b --noop-interval 0",
        "tcp perf --bs 4096 --count 64 --json",
        "tcp perf --rr --span 4096 --qd 2 --seconds 1",
        "perf-compare --bs 4096 --count 64",
        "perf-compare --repeat 1 --span 1048576 --digests --write",
    ];
    for line in table {
        let v: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if let Err(e) = Cli::try_parse_args(&v) {
            panic!("`ulp-ddp {line}` no longer parses:\n{e}");
        }
    }
}

#[test]
fn version_and_help_on_stdout() {
    let (code, out, err) = run_raw(&["--version"], &[], None);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("ulp-ddp {}", env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["-h"],
        &["nvme", "--help"],
        &["iscsi", "read", "-h"],
    ] {
        let (code, out, err) = run_raw(args, &[], None);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage: ulp-ddp"), "{args:?}: {out}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    let (_, out, _) = run_raw(&["nvme", "write", "--help"], &[], None);
    assert!(
        String::from_utf8_lossy(&out).contains("0x9E37"),
        "the pattern is documented"
    );
}

/// `ulp-ddp ... | head -1`: standard output closed early must not panic.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    for args in [
        &["--help"][..],
        &["nvme", "read", "--bs", "1M", "--count", "32", "--out", "-"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ulp-ddp starts");
        let mut first = [0u8; 10];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("some output");
        // The reader is gone (dropped): the writer sees a broken pipe.
        let out = child.wait_with_output().expect("exits");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn bad_values_are_refused_with_the_flag_and_the_range() {
    for (args, says) in [
        (
            &["nvme", "perf", "--qd", "0"][..],
            &["--qd", "1..=1024"][..],
        ),
        (&["nvme", "read", "--bs", "0"], &["--bs", "at least 1"]),
        (&["iscsi", "read", "--bs", "12x"], &["--bs", "not a size"]),
        (
            &["nvme", "verify", "--queues", "65"],
            &["--queues", "1..=64"],
        ),
        (&["iscsi", "verify", "--count", "0"], &["--count", "1.."]),
        (
            &["tcp", "perf", "--seconds", "0"],
            &["--seconds", "out of range"],
        ),
        (
            &["nvme", "read", "nvme://h/n/1"],
            &["not an nvme-tcp:// URL: \"nvme://h/n/1\""],
        ),
        (
            &["iscsi", "read", "iscsi:/bad"],
            &["not an iscsi:// URL: \"iscsi:/bad\""],
        ),
        (
            &["iscsi", "read", "iscsi://h:x/t/0"],
            &["not an iscsi:// URL: \"iscsi://h:x/t/0\""],
        ),
    ] {
        let (code, out, err) = run_raw(args, &[], None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {s:?} not in {err}");
        }
    }
    // Not a multiple of the block size: refused once the block size is known, not rounded.
    let (code, _, err) = run_raw(&["iscsi", "read", "--len", "1000"], &[], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--bs 1000: not a multiple of the LUN's block size 512"),
        "{err}"
    );
    let (code, _, err) = run_raw(&["nvme", "read", "--bs", "1000", "--count", "1"], &[], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--bs 1000: not a multiple of the namespace's block size"),
        "{err}"
    );
}

#[test]
fn sizes_take_suffixes() {
    let out = run(&["iscsi", "read", "--bs", "4k", "--count", "2"]);
    assert!(out.contains("read 8192 bytes at LBA 0"), "{out}");
    let out = run(&["nvme", "read", "--bs", "128K", "--count", "2", "--qd", "1"]);
    assert!(out.contains("131072 B x 2"), "{out}");
}

#[test]
fn nvme_write_in_then_read_out_round_trip() {
    use ulp_testbed::nvme::{Target, TargetConfig};
    let t = Target::start(TargetConfig::default()).expect("target");
    let url = format!("nvme-tcp://{}/{}/1", t.addr(), t.subnqn());
    let data: Vec<u8> = (0..20 * 512u32).map(|i| (i * 7 + i / 511) as u8).collect();
    let (code, out, err) = run_raw(
        &[
            "nvme", "write", "--lba", "100", "--bs", "4k", "--in", "-", &url,
        ],
        &[],
        Some(&data),
    );
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("write "), "{err}");
    assert_eq!(t.contents(100 * 512, data.len()), data);
    let (code, out, err) = run_raw(
        &[
            "nvme", "read", "--lba", "100", "--blocks", "20", "--bs", "4k", "--out", "-", &url,
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out == data,
        "read back {} bytes, not what was written",
        out.len()
    );
    assert!(
        err.contains("target: "),
        "the summary goes to stderr: {err}"
    );
    // Default port 4420 when none is given: the URL parses and names it.
    let u = ulp_ddp_cli::nvme_cli::parse_url("nvme-tcp://10.1.2.3/nqn.x:y/1").expect("url");
    assert_eq!(u.port, 4420);
}

#[test]
fn iscsi_write_in_then_read_out_round_trip_with_chap_from_env_and_file() {
    use ulp_testbed::iscsi::{Target, TargetConfig};
    let t = Target::start(TargetConfig {
        chap: Some(("alice".into(), b"s3cret-s3cret".to_vec())),
        ..TargetConfig::default()
    })
    .expect("target");
    let url = format!("iscsi://alice@{}/{}/0", t.addr(), t.iqn());
    let data: Vec<u8> = (0..8 * 512u32).map(|i| (i * 13 + 5) as u8).collect();
    let env = [("ULP_DDP_CHAP_SECRET", "s3cret-s3cret")];
    let (code, _, err) = run_raw(
        &["iscsi", "write", "--lba", "40", "--in", "-", &url],
        &env,
        Some(&data),
    );
    assert_eq!(code, 0, "{err}");
    let file = std::env::temp_dir().join(format!("ulp-ddp-secret-{}", std::process::id()));
    std::fs::write(&file, "s3cret-s3cret\n").expect("secret file");
    let file = file.to_string_lossy().into_owned();
    let (code, out, err) = run_raw(
        &[
            "iscsi",
            "read",
            "--lba",
            "40",
            "--blocks",
            "8",
            "--out",
            "-",
            "--chap-secret-file",
            &file,
            &url,
        ],
        &[],
        None,
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{err}");
    assert!(
        out == data,
        "read back {} bytes, not what was written",
        out.len()
    );
    assert!(!err.contains("visible"), "{err}");
    // No secret at all: a clear error, not a failed login.
    let (code, _, err) = run_raw(&["iscsi", "read", &url], &[], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ULP_DDP_CHAP_SECRET"), "{err}");
    // The secret in the URL still works, with a warning.
    let in_url = format!("iscsi://alice%s3cret-s3cret@{}/{}/0", t.addr(), t.iqn());
    let (code, _, err) = run_raw(&["iscsi", "read", "--bs", "4k", &in_url], &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("visible to every user"), "{err}");
}

#[test]
fn digests_per_kind_reach_the_connection() {
    for (kind, hd, dd) in [
        ("header", true, false),
        ("data", false, true),
        ("both", true, true),
        ("none", false, false),
    ] {
        let out = run(&["iscsi", "read", "--bs", "4k", "--digests", kind]);
        let want = format!("HeaderDigest={hd} DataDigest={dd}");
        assert!(out.contains(&want), "{kind}: {out}");
    }
    for (kind, says) in [
        ("header", "header digest"),
        ("data", "data digest"),
        ("both", "header and data digests"),
    ] {
        let out = run(&[
            "nvme",
            "read",
            "--bs",
            "4k",
            "--count",
            "2",
            "--digests",
            kind,
        ]);
        assert!(out.contains(&format!("most, {says};")), "{kind}: {out}");
    }
}

/// `--tls` with the key in the environment (never on the command line): verify, perf and read
/// against the embedded target serving TLS only; without a key, the error names both ways to
/// give one.
#[test]
fn nvme_over_tls_with_the_key_from_the_environment() {
    // A configured PSK in the interchange format (hash 01), as `nvme gen-tls-key` prints it.
    let key = ulp_nvme_tcp::psk::ConfiguredPsk::new(ulp_nvme_tcp::psk::PskHash::Sha256, &[7; 32])
        .expect("key")
        .to_interchange();
    let env = [("ULP_DDP_TLS_KEY", key.as_str())];
    let args = [
        "nvme",
        "verify",
        "--tls",
        "--size",
        "128k",
        "--count",
        "4",
        "--digests",
    ];
    let (code, out, err) = run_raw(&args, &env, None);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("over TLS 1.3"), "{out}");
    assert_eq!(nvme_row(&out, "write"), (4, 0, 0), "{out}");
    assert_eq!(nvme_row(&out, "read"), (4, 0, 0), "{out}");
    let perf = [
        "nvme",
        "perf",
        "--tls",
        "--bs",
        "4k",
        "--count",
        "200",
        "--no-progress",
    ];
    let (code, out, err) = run_raw(&perf, &env, None);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("over TLS 1.3"), "{out}");
    let (code, _, err) = run_raw(&["nvme", "read", "--tls", "--count", "1"], &[], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("ULP_DDP_TLS_KEY") && err.contains("--tls-key-file"),
        "{err}"
    );
}
