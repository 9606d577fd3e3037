//! The `ulp-ddp iscsi` tool against a real tgtd (Debian's `tgt`, a file-backed LUN 1): a file
//! written with `write --lba 100 --in f` reads back equal with `read --lba 100 --out - | cmp -
//! f`, and the information commands (`discover`, `report-luns`, `inquiry`, `readcap`) show
//! what tgtd serves.
//!
//! Without tgtd the test prints why and passes, unless `ULP_REQUIRE_PEERS=1`, when it fails
//! ([`peer_available`]).

mod common;

use ulp_testbed::peers::{Tgtd, peer_available};

const LUN_BYTES: u64 = 16 << 20;

fn ok(args: &[&str]) -> String {
    let out = common::ok(args);
    println!("$ ulp-ddp {}\n{out}", args.join(" "));
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
    // tgtd's file-backed LUN has no protection information; the other fields are tgtd's.
    assert!(out.contains("\nP_TYPE:0 PROT_EN:0\n"), "{out}");
    for field in [
        "P_I_EXPONENT:",
        "LBPME:",
        "LOWEST ALIGNED LOGICAL BLOCK ADDRESS:",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(field)),
            "{field} in\n{out}"
        );
    }
    let block: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("LOGICAL BLOCK LENGTH IN BYTES:"))
        .and_then(|v| v.parse().ok())
        .expect("block length");

    common::write_then_read_to_cmp("iscsi", &url, block);
}
