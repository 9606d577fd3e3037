//! Wireshark as an independent decoder: the PDUs of a host session against the embedded target
//! (both directions, digests on, R2T and split C2HData/H2CData included) are written to a pcap
//! (Ethernet/IPv4/TCP frames with consistent lengths and sequence numbers, large PDUs split over
//! several segments) and dissected by `tshark` with digest checking on. Every PDU must decode,
//! none malformed, no digest bad.
//!
//! If tshark is missing the test prints why and passes, unless `ULP_REQUIRE_PEERS=1`.

use std::collections::HashMap;
use std::process::Command;

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Options};
use ulp_nvme_tcp::target::{CapturedPdu, Target, TargetConfig};
use ulp_nvme_tcp::wire::Digests;

const PORT: u16 = 14420;
const SEGMENT: usize = 16 * 1024;

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |&b| u32::from(b));
        sum += hi | lo;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// One Ethernet/IPv4/TCP frame carrying `payload`.
fn frame(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.0);
    ip.extend_from_slice(&dst.0);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src.1.to_be_bytes());
    tcp.extend_from_slice(&dst.1.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]);
    // TCP checksum over the pseudo-header, header and payload.
    let mut pseudo = Vec::with_capacity(12 + 20 + payload.len());
    pseudo.extend_from_slice(&src.0);
    pseudo.extend_from_slice(&dst.0);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    pseudo.extend_from_slice(payload);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    f
}

/// A pcap of the captured PDUs; returns the file bytes and the number of TCP segments.
fn pcap(pdus: &[CapturedPdu]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    // Per connection: (host seq, target seq).
    let mut seqs: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut frames = 0;
    for (i, p) in pdus.iter().enumerate() {
        let host = ([10, 0, 0, 1], 40000 + p.conn as u16);
        let target = ([10, 0, 0, 2], PORT);
        let s = seqs.entry(p.conn).or_insert((1000, 5000));
        for chunk in p.bytes.chunks(SEGMENT) {
            let f = if p.from_host {
                let f = frame(host, target, s.0, s.1, chunk);
                s.0 = s.0.wrapping_add(chunk.len() as u32);
                f
            } else {
                let f = frame(target, host, s.1, s.0, chunk);
                s.1 = s.1.wrapping_add(chunk.len() as u32);
                f
            };
            out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
            out.extend_from_slice(&((i * 10 + frames) as u32 % 1_000_000).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&f);
            frames += 1;
        }
    }
    (out, frames)
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
    if Command::new("tshark").arg("--version").output().is_err() {
        if std::env::var("ULP_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("tshark is not installed");
        }
        eprintln!("skipping: tshark is not installed");
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
