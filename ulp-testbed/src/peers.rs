//! Real peers on 127.0.0.1, started and stopped by the tests that need them: tgtd (Debian's
//! `tgt`), and tshark as an independent decoder of captured traffic. A peer that cannot run
//! skips its test, or fails it under `ULP_REQUIRE_PEERS=1` (what `scripts/test.sh` sets).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ulp_iscsi::blocking::Direction;
use ulp_iscsi::wire::Digests;
use ulp_iscsi::wire::bhs;

use crate::pcap;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether `bin` is on the PATH.
pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether peer tests must fail rather than skip (`ULP_REQUIRE_PEERS=1`).
pub fn require_peers() -> bool {
    std::env::var("ULP_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The test cannot run: fails under `ULP_REQUIRE_PEERS=1`, else says why and lets it pass.
///
/// # Panics
///
/// Under `ULP_REQUIRE_PEERS=1`.
pub fn unavailable(what: &str, why: &str) {
    if require_peers() {
        panic!("{what} unavailable: {why} (ULP_REQUIRE_PEERS=1)");
    }
    eprintln!("skipping the {what} test: {why} (ULP_REQUIRE_PEERS=1 makes this fail)");
}

/// Whether `bin` can run; if not, skips or fails per [`unavailable`].
pub fn peer_available(bin: &str) -> bool {
    if have(bin) {
        return true;
    }
    unavailable(bin, "not found (install Debian's package)");
    false
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A tgtd on 127.0.0.1 with one target and a file LUN 1; stopped on drop.
#[derive(Debug)]
pub struct Tgtd {
    child: Option<Child>,
    /// Its iSCSI portal's port.
    pub port: u16,
    /// Its control port (tgtadm -C).
    pub control: u32,
    /// The target's IQN.
    pub iqn: String,
    lun_file: PathBuf,
    digests: String,
}

impl Tgtd {
    /// Starts tgtd with a `lun_bytes` file LUN, HeaderDigest and DataDigest set to `digests`
    /// ("None", "CRC32C", "CRC32C,None").
    ///
    /// # Panics
    ///
    /// If tgtd does not come up within 10 s.
    pub fn start(lun_bytes: u64, digests: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let control = 200 + (std::process::id() % 500) * 8 + n;
        let port = free_port();
        let lun_file =
            std::env::temp_dir().join(format!("ulp-iscsi-tgtd-{}-{n}.img", std::process::id()));
        let f = std::fs::File::create(&lun_file).expect("create LUN file");
        f.set_len(lun_bytes).expect("size LUN file");
        let iqn = format!("iqn.2024-01.io.ulp-ddp:tgtd{n}");
        let mut t = Self {
            child: None,
            port,
            control,
            iqn,
            lun_file,
            digests: digests.to_string(),
        };
        t.launch();
        t
    }

    /// Starts the tgtd process and sets up the target, its file LUN 1 and the digests.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.lun_file.with_extension("log"))
            .expect("log file");
        let child = Command::new("tgtd")
            .args([
                "-f",
                "--iscsi",
                &format!("portal=127.0.0.1:{}", self.port),
                "-C",
                &self.control.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tgtd");
        self.child = Some(child);
        let t = &*self;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.adm(&["--op", "show", "--mode", "system"]) {
            assert!(Instant::now() < deadline, "tgtd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let iqn = t.iqn.clone();
        let file = t.lun_file.to_string_lossy().to_string();
        assert!(t.adm(&[
            "--lld",
            "iscsi",
            "--mode",
            "target",
            "--op",
            "new",
            "--tid",
            "1",
            "--targetname",
            &iqn
        ]));
        assert!(t.adm(&[
            "--lld",
            "iscsi",
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            "1",
            "--lun",
            "1",
            "--backing-store",
            &file
        ]));
        assert!(t.adm(&[
            "--lld",
            "iscsi",
            "--mode",
            "target",
            "--op",
            "bind",
            "--tid",
            "1",
            "--initiator-address",
            "ALL"
        ]));
        for key in ["HeaderDigest", "DataDigest"] {
            assert!(t.adm(&[
                "--lld", "iscsi", "--mode", "target", "--op", "update", "--tid", "1", "--name",
                key, "--value", &t.digests
            ]));
        }
        // The listener answers once the portal is up.
        while std::net::TcpStream::connect(("127.0.0.1", t.port)).is_err() {
            assert!(Instant::now() < deadline, "tgtd portal did not open");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The LUN's backing file.
    pub fn lun_file(&self) -> &std::path::Path {
        &self.lun_file
    }

    /// The tgtd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to tgtd; whether it was delivered.
    pub fn signal(&self, signal: &str) -> bool {
        self.pid().is_some_and(|pid| {
            Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Kills tgtd with SIGKILL (no goodbye to its initiators) and reaps it; the LUN file
    /// stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts tgtd again, after [`kill`](Self::kill): the same port, control number, target
    /// name and file LUN (what was written survives).
    ///
    /// # Panics
    ///
    /// If tgtd does not come up within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs tgtadm against this tgtd; whether it succeeded.
    pub fn adm(&self, args: &[&str]) -> bool {
        Command::new("tgtadm")
            .arg("-C")
            .arg(self.control.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // A stopped tgtd answers nothing: continue it first.
        let _ = self.signal("CONT");
        // tgtd ignores SIGTERM while targets exist: delete them, then the system.
        let _ = self.adm(&[
            "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force",
        ]);
        let _ = self.adm(&["--op", "delete", "--mode", "system"]);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.lun_file);
        let _ = std::fs::remove_file(self.lun_file.with_extension("log"));
    }
}

/// Counts the PDUs of a captured iSCSI direction (login PDUs carry no digests).
///
/// # Panics
///
/// If the capture ends inside a PDU or does not frame.
pub fn count_pdus(stream: &[u8], digests: Digests) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at + 48 <= stream.len() {
        let op = stream[at] & 0x3F;
        let d = if op == 0x03 || op == 0x23 {
            Digests::NONE
        } else {
            digests
        };
        let f = bhs::frame(&stream[at..], d).expect("frame");
        at += f.total_len;
        n += 1;
    }
    assert_eq!(at, stream.len(), "capture ends inside a PDU");
    n
}

/// Writes an iSCSI capture as a pcap and has tshark decode it: every PDU decoded, none malformed,
/// no bad digest. Returns the number of PDUs tshark decoded.
///
/// # Panics
///
/// On any PDU tshark did not decode cleanly.
pub fn tshark_iscsi(
    capture: &[(Direction, Vec<u8>)],
    client_port: u16,
    port: u16,
    digests: Digests,
) -> usize {
    let to: Vec<u8> = capture
        .iter()
        .filter(|(d, _)| *d == Direction::ToTarget)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let from: Vec<u8> = capture
        .iter()
        .filter(|(d, _)| *d == Direction::FromTarget)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let expected = count_pdus(&to, digests) + count_pdus(&from, digests);
    let path = std::env::temp_dir().join(format!(
        "ulp-iscsi-{}-{client_port}.pcap",
        std::process::id()
    ));
    let segments = capture
        .iter()
        .map(|(d, b)| (*d == Direction::ToTarget, &b[..]));
    std::fs::write(&path, pcap::write(segments, client_port, port)).expect("write pcap");
    let p = path.to_string_lossy().to_string();
    let decode = format!("tcp.port=={port},iscsi");
    let run = |extra: &[&str]| {
        let out = Command::new("tshark")
            .args([
                "-r",
                &p,
                "-d",
                &decode,
                "-o",
                "iscsi.bogus_pdu_max_data_len:16777215",
            ])
            .args(extra)
            .output()
            .expect("run tshark");
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let opcodes = run(&[
        "-Y",
        "iscsi",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-e",
        "iscsi.opcode",
    ]);
    let decoded: usize = opcodes
        .lines()
        .map(|l| l.split(',').filter(|s| !s.is_empty()).count())
        .sum();
    let malformed = run(&["-Y", "_ws.malformed || _ws.expert.severity >= \"error\""]);
    let verbose = run(&["-O", "iscsi"]);
    if std::env::var_os("ULP_KEEP_PCAP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
    assert!(
        malformed.trim().is_empty(),
        "tshark found malformed PDUs:\n{malformed}"
    );
    assert_eq!(
        verbose.matches("Bad CRC32").count(),
        0,
        "tshark found bad digests"
    );
    if digests.header {
        assert!(
            verbose.matches("Good CRC32").count() > 0,
            "no digest was checked"
        );
    }
    assert_eq!(
        decoded, expected,
        "tshark decoded {decoded} PDUs, the streams hold {expected}"
    );
    decoded
}
