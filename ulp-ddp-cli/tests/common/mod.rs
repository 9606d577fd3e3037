//! What the tool's integration tests share: running the built `ulp-ddp`, and the write-then-
//! `read --out - | cmp - f` round trip against a real target.

#![allow(dead_code)] // each test file uses a part

use std::process::Command;

/// Runs `ulp-ddp args` to completion; returns (success, stdout bytes, stderr).
pub(crate) fn tool_bytes(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
        .args(args)
        .output()
        .expect("ulp-ddp starts");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `ulp-ddp args` to completion; returns (success, stdout, stderr).
pub(crate) fn tool(args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = tool_bytes(args);
    (ok, String::from_utf8_lossy(&out).into_owned(), err)
}

/// Runs `ulp-ddp args` and returns its standard output; fails the test, with what the tool
/// printed, if it exits with an error.
pub(crate) fn ok(args: &[&str]) -> String {
    let (ok, out, err) = tool(args);
    assert!(ok, "ulp-ddp {} failed:\n{out}\n{err}", args.join(" "));
    out
}

/// `ulp-ddp PROTO write --lba 100 --in f URL`, then `ulp-ddp PROTO read --lba 100 --blocks N
/// --out - URL | cmp - f` (bash, pipefail): the file reads back unchanged. `block` is the
/// target's block size; f is 192 KiB.
pub(crate) fn write_then_read_to_cmp(proto: &str, url: &str, block: usize) {
    let dir = std::env::temp_dir().join(format!("ulp-ddp-{proto}-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let f = dir.join("f");
    let data: Vec<u8> = (0..192 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&f, &data).expect("write f");
    let f = f.to_str().expect("utf-8 path");
    let (written, out, err) = tool(&[proto, "write", "--lba", "100", "--in", f, url]);
    println!("$ ulp-ddp {proto} write --lba 100 --in f {url}\n{out}{err}");
    assert!(written, "write --in failed:\n{out}\n{err}");
    let blocks = data.len() / block;
    let cmd = format!(
        "set -o pipefail; '{}' {proto} read --lba 100 --blocks {blocks} --out - '{url}' | cmp - '{f}'",
        env!("CARGO_BIN_EXE_ulp-ddp")
    );
    let out = Command::new("bash")
        .args(["-c", &cmd])
        .output()
        .expect("bash starts");
    println!(
        "$ ulp-ddp {proto} read --lba 100 --blocks {blocks} --out - URL | cmp - f ({block} B \
         blocks): {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "read back differs from f (cmp or read failed)"
    );
}
