//! Wireshark on the wire of a TLS session: after the handshake it sees only TLS 1.3 application
//! data records, and no NVMe/TCP PDU in the clear; the same session without TLS (the control)
//! shows NVMe/TCP PDUs to the same dissector settings.
//!
//! The raw TCP bytes both ways between the host and the embedded target go through a recording
//! proxy; the test bed's pcap writer turns them into Ethernet/IPv4/TCP frames (one TCP
//! connection per queue), which `tshark` reads twice: with TLS decoded on the port (every
//! record's content type and legacy version) and with the NVMe/TCP dissector forced on the port
//! (`-d tcp.port==PORT,nvme-tcp`, `-Y nvme-tcp`).
//!
//! If tshark is missing the test prints why and passes, unless `ULP_REQUIRE_PEERS=1`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Options};
use ulp_nvme_tcp::psk::TlsPsk;
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig, TargetTls};
use ulp_testbed::pcap::Pcap;

const PORT: u16 = 14420;
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0d5b8e1c-6f2a-4b3d-9e7f-a1b2c3d4e5f6";
const KEY: [u8; 32] = [0x6e; 32];

/// What crossed the proxy: (connection, from the host, bytes), in arrival order.
type Recording = Arc<Mutex<Vec<(usize, bool, Vec<u8>)>>>;

/// A TCP proxy recording every byte both ways; `open` counts the copying threads still running.
struct Recorder {
    addr: SocketAddr,
    log: Recording,
    open: Arc<Mutex<usize>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let log: Recording = Arc::default();
        let open = Arc::new(Mutex::new(0usize));
        let (l, o) = (Arc::clone(&log), Arc::clone(&open));
        std::thread::spawn(move || {
            for (conn, host) in listener.incoming().enumerate() {
                let Ok(host) = host else { return };
                let Ok(target) = TcpStream::connect(upstream) else {
                    return;
                };
                for (from, to, from_host) in [
                    (host.try_clone(), target.try_clone(), true),
                    (target.try_clone(), host.try_clone(), false),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        return;
                    };
                    let (l, o) = (Arc::clone(&l), Arc::clone(&o));
                    *o.lock().unwrap() += 1;
                    std::thread::spawn(move || copy(from, to, conn, from_host, &l, &o));
                }
            }
        });
        Self { addr, log, open }
    }

    /// The recording, once every connection has ended (bounded wait).
    fn finish(&self) -> Vec<(usize, bool, Vec<u8>)> {
        let until = Instant::now() + Duration::from_secs(10);
        while *self.open.lock().unwrap() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log.lock().unwrap().clone()
    }
}

fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    conn: usize,
    from_host: bool,
    log: &Recording,
    open: &Mutex<usize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The record is taken before the bytes are passed on, so that the log keeps the order
    // in which the two ends saw them.
    while let Ok(n @ 1..) = from.read(&mut buf) {
        log.lock()
            .unwrap()
            .push((conn, from_host, buf[..n].to_vec()));
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    *open.lock().unwrap() -= 1;
}

/// A session (write and read back 128 KiB and 4 KiB, both digests) through a recorder, as a
/// pcap file; `tls`: inside TLS 1.3 with a PSK.
fn capture(tls: bool, file: &std::path::Path) -> usize {
    let config = TargetConfig::default();
    let identity = format!("NVMe0R01 {HOSTNQN} {}", config.subnqn);
    let target = Target::start(TargetConfig {
        tls: tls.then(|| TargetTls {
            identity: identity.clone(),
            key: KEY.to_vec(),
            required: true,
        }),
        ..config
    })
    .expect("target");
    let recorder = Recorder::start(target.addr());
    let mut o = Options::new(target.subnqn());
    o.hostnqn = HOSTNQN.to_string();
    o.digests = Digests::BOTH;
    o.tls = tls.then(|| TlsPsk::new(&identity, &KEY).expect("a 32-byte key"));
    let mut c = Controller::connect(recorder.addr, &o).expect("connect");
    for (slba, len) in [(0u64, 128 * 1024usize), (512, 4096)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        c.write(slba, SgBuffer::from_vec(data.clone()))
            .expect("write");
        let r = c.read(slba, SgBuffer::zeroed(len)).expect("read");
        assert!(r.into_vec() == data, "read back {len}");
    }
    c.close().expect("close");
    let recording = recorder.finish();
    let mut p = Pcap::new().with_mss(16 * 1024);
    let mut conns = Vec::new();
    for (conn, from_host, bytes) in &recording {
        while conns.len() <= *conn {
            let n = conns.len() as u16;
            conns.push(p.connection(40000 + n, PORT));
        }
        p.push(conns[*conn], *from_host, bytes);
    }
    std::fs::write(file, p.finish()).expect("write pcap");
    conns.len()
}

fn tshark(file: &std::path::Path, decode_as: &str, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("tcp.port=={PORT},{decode_as}")])
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The PDU types tshark's NVMe/TCP dissector finds in the file when forced on the port.
fn nvme_pdu_types(file: &std::path::Path) -> Vec<u8> {
    tshark(
        file,
        "nvme-tcp",
        &["-Y", "nvme-tcp", "-T", "fields", "-e", "nvme-tcp.type"],
    )
    .lines()
    .flat_map(|l| l.split(','))
    .filter(|t| !t.is_empty())
    .map(|t| t.parse().expect("a PDU type"))
    .collect()
}

/// NVMe/TCP's PDU types: ICReq (0) to R2T (9).
fn is_nvme_tcp_pdu(t: u8) -> bool {
    t <= 9
}

#[test]
fn tshark_sees_only_tls_application_data_after_the_handshake() {
    if !ulp_testbed::peers::peer_available("tshark") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ulp-nvme-tls-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    // The control: the same session in plaintext shows NVMe/TCP to the same dissector.
    let plain = dir.join("plain.pcap");
    capture(false, &plain);
    let pdus = nvme_pdu_types(&plain);
    println!("plaintext: tshark decodes {} NVMe/TCP PDUs", pdus.len());
    assert!(pdus.len() >= 10, "the control shows NVMe/TCP: {pdus:?}");
    assert!(pdus.iter().all(|&t| is_nvme_tcp_pdu(t)), "{pdus:?}");

    let tls = dir.join("tls.pcap");
    let connections = capture(true, &tls);
    assert_eq!(connections, 2, "admin and one I/O queue");
    // Every TLS record in order, from `tshark -V` with TLS decoded on the port: the TCP
    // stream, its direction (source port), then each record's "Content Type" (plaintext
    // records) or "Opaque Type" (encrypted TLS 1.3 records) and the "Version" line after it.
    let verbose = tshark(&tls, "tls", &["-V"]);
    let mut flows: BTreeMap<(u32, bool), Vec<(u8, String)>> = BTreeMap::new();
    let (mut stream, mut from_host) = (0u32, false);
    let mut record_type: Option<u8> = None;
    let in_parens = |line: &str| {
        let open = line.rfind('(')?;
        Some(line[open + 1..line.rfind(')')?].to_string())
    };
    for line in verbose.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Transmission Control Protocol, Src Port: ") {
            from_host = !rest.starts_with(&format!("{PORT},"));
        } else if let Some(rest) = line.strip_prefix("[Stream index: ") {
            stream = rest.trim_end_matches(']').parse().expect("a stream index");
        } else if line.starts_with("Content Type: ") || line.starts_with("Opaque Type: ") {
            record_type = in_parens(line).and_then(|t| t.parse().ok());
        } else if let (Some(t), Some(v)) = (record_type, line.strip_prefix("Version: ")) {
            let version = in_parens(v).expect("a version");
            flows
                .entry((stream, from_host))
                .or_default()
                .push((t, version));
            record_type = None;
        }
    }
    let mut application = 0;
    for ((stream, from_host), flow) in &flows {
        // The handshake in the clear: ClientHello / ServerHello (22), the compatibility
        // change_cipher_spec (20); from the first application data record on, nothing else.
        let first = flow
            .iter()
            .position(|(t, _)| *t == 23)
            .unwrap_or_else(|| panic!("stream {stream}: no application data: {flow:?}"));
        assert!(
            flow[..first].iter().all(|(t, _)| matches!(t, 20 | 22)),
            "stream {stream} (host: {from_host}): only the handshake before: {flow:?}"
        );
        assert_eq!(flow[0].0, 22, "stream {stream}: starts with a handshake");
        for (t, v) in &flow[first..] {
            assert_eq!(
                *t, 23,
                "stream {stream}: after the handshake only application data"
            );
            assert_eq!(v, "0x0303", "stream {stream}: TLS 1.3's legacy version");
            application += 1;
        }
    }
    // Forced on the TLS bytes, the NVMe/TCP dissector only misreads TLS record headers as
    // "PDUs" of type 20 to 23 (the record's content type, an unknown PDU type) and finds no
    // NVMe/TCP PDU.
    let misread = nvme_pdu_types(&tls);
    let clear: Vec<u8> = misread
        .iter()
        .copied()
        .filter(|&t| is_nvme_tcp_pdu(t))
        .collect();
    println!(
        "TLS: {application} application data records after the handshakes; the NVMe/TCP \
         dissector finds {} NVMe/TCP PDUs in the clear (it misreads {} TLS record headers as \
         PDUs of unknown types {misread:?})",
        clear.len(),
        misread.len()
    );
    assert!(application >= 20);
    assert!(clear.is_empty(), "NVMe/TCP in the clear: {misread:?}");
    assert!(misread.iter().all(|t| (20..=23).contains(t)), "{misread:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
