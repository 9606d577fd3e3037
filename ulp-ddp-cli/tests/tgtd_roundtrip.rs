//! The `ulp-ddp iscsi` tool against a real tgtd (Debian's `tgt`, a file-backed LUN 1): a file
//! written with `write --lba 100 --in f` reads back equal with `read --lba 100 --out - | cmp -
//! f`, and the information commands (`discover`, `report-luns`, `inquiry`, `readcap`) show
//! what tgtd serves.
//!
//! Without tgtd the test prints why and passes, unless `ULP_REQUIRE_PEERS=1`, when it fails
//! ([`peer_available`]).

use std::process::Command;

use ulp_testbed::peers::{Tgtd, peer_available};

const LUN_BYTES: u64 = 16 << 20;

/// Runs `ulp-ddp args`; returns (success, stdout, stderr).
fn tool(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
        .args(args)
        .output()
        .expect("ulp-ddp starts");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = tool(args);
    println!("$ ulp-ddp {}\n{out}{err}", args.join(" "));
    assert!(ok, "ulp-ddp {} failed:\n{out}\n{err}", args.join(" "));
    out
}

#[test]
fn write_in_then_read_out_to_cmp_and_the_information_commands() {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let tgtd = Tgtd::start(LUN_BYTES, "None");
    let url = format!("iscsi://127.0.0.1:{}/{}/1", tgtd.port, tgtd.iqn);

    let out = ok(&[
        "iscsi",
        "discover",
        &format!("iscsi://127.0.0.1:{}", tgtd.port),
    ]);
    assert!(
        out.contains(&format!("Target:{} Portal:", tgtd.iqn)),
        "{out}"
    );
    let out = ok(&["iscsi", "report-luns", &url]);
    assert!(
        out.starts_with("Lun list length = 16 which implies 2 lun entries\n"),
        "tgtd's controller LUN 0 and the disk LUN 1: {out}"
    );
    assert!(out.contains("\n    0001000000000000\n"), "{out}");
    let out = ok(&["iscsi", "inquiry", &url]);
    assert!(
        out.contains("Peripheral Device Type:DIRECT_ACCESS\n"),
        "{out}"
    );
    assert!(out.contains("\nVendor:IET\n"), "{out}");
    let out = ok(&["iscsi", "readcap", &url]);
    assert!(
        out.ends_with(&format!("\nTotal size:{LUN_BYTES}\n")),
        "{out}"
    );
    let block: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("Logical Block Length:"))
        .and_then(|v| v.parse().ok())
        .expect("block length");

    let dir = std::env::temp_dir().join(format!("ulp-ddp-iscsi-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let f = dir.join("f");
    let data: Vec<u8> = (0..192 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&f, &data).expect("write f");
    let f = f.to_str().expect("utf-8 path");
    ok(&["iscsi", "write", "--lba", "100", "--in", f, &url]);
    let blocks = (data.len() / block).to_string();
    let cmd = format!(
        "set -o pipefail; '{}' iscsi read --lba 100 --blocks {blocks} --out - '{url}' | cmp - '{f}'",
        env!("CARGO_BIN_EXE_ulp-ddp")
    );
    let out = Command::new("bash")
        .args(["-c", &cmd])
        .output()
        .expect("bash starts");
    println!(
        "$ ulp-ddp iscsi read --lba 100 --blocks {blocks} --out - URL | cmp - f: {}\n{}{}",
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
