//! The information commands against the embedded targets, as a user runs them (the built
//! `ulp-ddp`): `nvme id-ctrl|list-ns|discover`, `iscsi discover|report-luns|inquiry|readcap`
//! print the fields nvme-cli and the libiscsi tools print; `perf-compare --plot` writes valid
//! SVG with one series per mode.

mod common;

use common::ok as run;

/// `name      : value` lines of `nvme id-ctrl`, as pairs.
fn fields(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(" : ").or_else(|| l.split_once(": ")))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn nvme_id_ctrl_list_ns_discover() {
    let out = run(&["nvme", "id-ctrl"]);
    assert!(out.starts_with("NVME Identify Controller:\n"), "{out}");
    let f = fields(&out);
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    for want in [
        "vid", "ssvid", "sn", "mn", "fr", "rab", "ieee", "cmic", "mdts", "cntlid", "ver", "oacs",
        "aerl", "lpa", "sqes", "cqes", "maxcmd", "nn", "sgls", "subnqn", "ioccsz", "iorcsz",
    ] {
        assert!(names.contains(&want), "{want} in\n{out}");
    }
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("mn"), Some("ulp-ddp embedded target"));
    assert_eq!(get("ver"), Some("0x10300"));
    assert_eq!(get("nn"), Some("1"));
    assert_eq!(get("sqes"), Some("0x66"));
    assert!(
        get("subnqn").is_some_and(|v| v.starts_with("nqn.")),
        "{out}"
    );

    assert_eq!(run(&["nvme", "list-ns", "--digests"]), "[   0]:0x1\n");

    let out = run(&["nvme", "discover"]);
    assert!(out.contains("Discovery Log Number of Records 1"), "{out}");
    assert!(out.contains("subtype: nvme subsystem"), "{out}");
}

#[test]
fn iscsi_discover_report_luns_inquiry_readcap() {
    let out = run(&["iscsi", "discover"]);
    assert!(
        out.starts_with("Target:iqn.") && out.contains(" Portal:127.0.0.1:"),
        "{out}"
    );

    let out = run(&["iscsi", "report-luns"]);
    assert_eq!(
        out,
        "Lun list length = 8 which implies 1 lun entry\nReport luns [select_report=0x0]:\n    \
         0000000000000000\n"
    );

    let out = run(&["iscsi", "inquiry", "--digests"]);
    for want in [
        "Peripheral Qualifier:CONNECTED\n",
        "Peripheral Device Type:DIRECT_ACCESS\n",
        "Removable:0\n",
        "Version:",
        "CmdQue:",
        "Vendor:ULPDDP\n",
        "Product:RAMDISK\n",
        "Revision:",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }

    let out = run(&["iscsi", "readcap"]);
    let value = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in\n{out}"))
    };
    let (last, len, size) = (
        value("RETURNED LOGICAL BLOCK ADDRESS:"),
        value("LOGICAL BLOCK LENGTH IN BYTES:"),
        value("Total size:"),
    );
    assert_eq!((last + 1) * len, size, "{out}");
    assert_eq!(size, 16 << 20, "the embedded 16 MiB LUN: {out}");
    // iscsi-readcapacity16's lines, in its order: the embedded LUN has no protection, one
    // logical block per physical block and no provisioning.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[2..6],
        [
            "P_TYPE:0 PROT_EN:0",
            "P_I_EXPONENT:0 LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:0",
            "LBPME:0 LBPRZ:0",
            "LOWEST ALIGNED LOGICAL BLOCK ADDRESS:0",
        ],
        "{out}"
    );
}

#[test]
fn perf_compare_plot_is_svg_with_one_series_per_mode_tls_included() {
    let dir = std::env::temp_dir().join(format!("ulp-ddp-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("compare.svg");
    let path = file.to_str().expect("utf-8 path");
    run(&[
        "perf-compare",
        "--sweep",
        "4k,64k",
        "--count",
        "40",
        "--qd",
        "4",
        "--repeat",
        "1",
        "--no-progress",
        "--tls",
        "--plot",
        path,
    ]);
    let svg = std::fs::read_to_string(&file).expect("the plot was written");
    let _ = std::fs::remove_dir_all(&dir);
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let series: Vec<_> = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .collect();
    let modes: Vec<_> = series
        .iter()
        .filter_map(|n| n.attribute("data-mode"))
        .collect();
    // --tls adds NVMe/TCP over TLS as a fifth series.
    assert_eq!(modes, ["tcp", "tcp-rr", "nvme-tcp", "iscsi", "nvme-tls"]);
    for s in &series {
        let mode = s.attribute("data-mode").unwrap_or_default();
        assert_eq!(s.attribute("id"), Some(format!("series-{mode}").as_str()));
        let lines = s
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        let marks = s.descendants().filter(|n| n.has_tag_name("circle")).count();
        // Throughput always; host CPU per GB where the platform tells (Linux does).
        assert!((1..=2).contains(&lines), "{mode}: {lines} lines");
        assert_eq!(marks, 2 * lines, "{mode}: a mark per block size and panel");
    }
    let labels: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for want in [
        "4k",
        "64k",
        "GB/s",
        "host CPU s per GB",
        "nvme-tcp",
        "iscsi",
        "nvme-tls",
    ] {
        assert!(
            labels.iter().any(|t| t.contains(want)),
            "{want} in {labels:?}"
        );
    }
}

#[test]
fn iscsi_over_the_ipv6_loopback() {
    // A bracketed host with no closing bracket: the error quotes the URL and says why.
    let (ok, _, err) = common::tool(&["iscsi", "readcap", "iscsi://[::1/iqn.x:t/0"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            "not an iscsi:// URL: \"iscsi://[::1/iqn.x:t/0\" (an IPv6 host needs its closing ]"
        ),
        "{err}"
    );

    use ulp_testbed::iscsi::{Target, TargetConfig};
    let bind = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    let t = match Target::start_on(bind, TargetConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "skipped: the embedded iSCSI target cannot listen on [::1]:0 ({e}): no IPv6 loopback"
            );
            return;
        }
    };
    let port = t.addr().port();
    let url = format!("iscsi://[::1]:{port}/{}/0", t.iqn());
    assert_eq!(t.url(), url);

    let out = run(&["iscsi", "discover", &format!("iscsi://[::1]:{port}")]);
    assert_eq!(
        out.lines().next(),
        Some(format!("Target:{} Portal:[::1]:{port},1", t.iqn()).as_str()),
        "{out}"
    );
    let out = run(&["iscsi", "readcap", &url]);
    assert!(out.ends_with("\nTotal size:16777216\n"), "{out}");
    common::write_then_read_to_cmp("iscsi", &url, 512);
    // What the tool wrote over IPv6 is on the LUN.
    assert_ne!(t.contents(100 * 512, 192 * 1024), vec![0; 192 * 1024]);
}
