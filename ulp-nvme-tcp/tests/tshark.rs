//! Wireshark as an independent decoder: the PDUs of a host session against the embedded target
//! (both directions, digests on, R2T and split C2HData/H2CData included) are written to a pcap
//! (the test bed's writer: Ethernet/IPv4/TCP frames with consistent lengths and sequence
//! numbers, large PDUs split over several segments) and dissected by `tshark` with digest checking on. Every PDU must decode,
//! none malformed, no digest bad.
//!
//! If tshark is missing the test prints why and passes, unless `ULP_REQUIRE_PEERS=1`.

use std::collections::HashMap;
use std::process::Command;

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Options};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{CapturedPdu, Target, TargetConfig};
use ulp_testbed::pcap::Pcap;

const PORT: u16 = 14420;
const SEGMENT: usize = 16 * 1024;

/// A pcap of the captured PDUs (one TCP connection per queue, large PDUs over several
/// segments); returns the file bytes and the number of frames carrying PDU bytes.
fn pcap(pdus: &[CapturedPdu]) -> (Vec<u8>, usize) {
    let mut p = Pcap::new().with_mss(SEGMENT);
    let mut conns: HashMap<u32, usize> = HashMap::new();
    let mut handshakes = 0;
    for pdu in pdus {
        let conn = *conns.entry(pdu.conn).or_insert_with(|| {
            handshakes += 3;
            p.connection(40000 + pdu.conn as u16, PORT)
        });
        p.push(conn, pdu.from_host, &pdu.bytes);
    }
    let frames = p.frames() - handshakes;
    (p.finish(), frames)
}

fn tshark(file: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("tcp.port=={PORT},nvme-tcp")])
        .args([
            "-o",
            "nvme-tcp.check_hdgst:TRUE",
            "-o",
            "nvme-tcp.check_ddgst:TRUE",
        ])
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn tshark_decodes_every_pdu() {
    if !ulp_testbed::peers::peer_available("tshark") {
        return;
    }
    let target = Target::start(TargetConfig {
        capture: true,
        maxh2cdata: 32 * 1024,
        max_c2h: 48 * 1024,
        ..TargetConfig::default()
    })
    .expect("target");
    let mut o = Options::new(target.subnqn());
    o.digests = Digests::BOTH;
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let big: Vec<u8> = (0..128 * 1024).map(|i| (i * 13) as u8).collect();
    c.write(0, SgBuffer::from_vec(big.clone()))
        .expect("R2T write");
    c.write(1000, SgBuffer::from_vec(vec![0x5A; 4096]))
        .expect("in-capsule write");
    let r = c.read(0, SgBuffer::zeroed(big.len())).expect("read");
    assert_eq!(r.into_vec(), big);
    c.flush().expect("flush");
    drop(c);
    let pdus = target.capture();
    assert!(target.violations().is_empty(), "{:?}", target.violations());
    let (bytes, frames) = pcap(&pdus);
    let dir = std::env::temp_dir().join(format!("ulp-nvme-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("session.pcap");
    std::fs::write(&file, &bytes).expect("write pcap");

    let fields = tshark(
        &file,
        &[
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            "nvme-tcp.type",
            "-e",
            "nvme-tcp.hdgst.status",
            "-e",
            "nvme-tcp.ddgst.status",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ],
    )
    .expect("tshark runs");
    let mut types = Vec::new();
    let (mut hgood, mut dgood) = (0, 0);
    for line in fields.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let col = |i: usize| cols.get(i).copied().unwrap_or("");
        types.extend(
            col(0)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        for s in col(1).split(',').filter(|s| !s.is_empty()) {
            assert_eq!(s, "1", "bad header digest: {line}");
            hgood += 1;
        }
        for s in col(2).split(',').filter(|s| !s.is_empty()) {
            assert_eq!(s, "1", "bad data digest: {line}");
            dgood += 1;
        }
        assert!(col(3).is_empty(), "malformed: {line}");
    }
    let verbose = tshark(&file, &["-V"]).expect("tshark -V");
    assert!(
        !verbose.contains("Malformed"),
        "malformed PDU in the dissection"
    );
    assert!(!verbose.contains("incorrect"), "a digest is wrong");
    println!(
        "{} PDUs in {frames} segments; tshark decoded {} NVMe/TCP PDUs, {hgood} good header digests, {dgood} good data digests",
        pdus.len(),
        types.len()
    );
    assert_eq!(types.len(), pdus.len(), "every PDU decoded: {types:?}");
    // Header digests on every PDU after ICReq/ICResp (two per connection); data digests on
    // every PDU with data except the connection-level ones.
    let with_hdgst = pdus.iter().filter(|p| p.bytes[1] & 1 != 0).count();
    let with_ddgst = pdus.iter().filter(|p| p.bytes[1] & 2 != 0).count();
    assert_eq!(hgood, with_hdgst);
    assert_eq!(dgood, with_ddgst);
    assert!(
        with_ddgst >= 8,
        "C2HData, H2CData and in-capsule data all checked"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
