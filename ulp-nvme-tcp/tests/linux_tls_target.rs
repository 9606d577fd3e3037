//! The real TLS peer: the Linux kernel NVMe/TCP target (nvmet-tcp) with the secure channel
//! (TLS 1.3 with a PSK, NVMe TP 8011; the handshake done by tlshd) in a qemu (TCG) VM built
//! from Debian trixie packages by `scripts/vm/tls/build.sh`. One VM per test binary
//! (`treq=required`), killed at the end by a guard (also on failure).
//!
//! - The plaintext host (`Controller::connect`) fails with an error that says the controller
//!   closed the connection right after the ICReq and that the port may require TLS.
//! - OpenSSL's `s_client` with the PSK and the identity `NVMe0R01 <hostnqn> <subnqn>` completes
//!   a TLS 1.3 handshake, sends an ICReq inside it and gets an ICResp back: the VM serves
//!   NVMe/TCP over TLS.
//! - With a wrong key the handshake fails, and tlshd says so on the VM's console.
//! - Our host over TLS (`Options::tls`, feature `tls`): the identity `NVMe0R01 <hostnqn>
//!   <subnqn>` and the raw key as the VM inserts them; write, read back and compare at 4 KiB,
//!   128 KiB and 1 MiB with header and data digests, on two I/O queues (each its own TLS
//!   session); with a wrong key it fails naming the refused key.
//!
//! If the VM cannot be built or booted (qemu, cpio, apt-get, xz or openssl missing), the test
//! prints why and passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ulp_nvme_tcp::ConnectionError;
use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Error, Options};
use ulp_nvme_tcp::psk::TlsPsk;
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::vm::{self, TlsVm, Treq};

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5e3c7a4e-2b1d-4c6e-9a8f-0123456789ab";
/// The test key (32 bytes, hex): the retained PSK the target's keyring holds.
const PSK: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
/// A key differing from [`PSK`] in its last byte.
const WRONG_PSK: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543211";
/// How long one `s_client` run may take (a handshake under TCG takes well under a second).
const S_CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// An ICReq (NVMe/TCP PDU type 0, HLEN 128, PLEN 128, PFV 0, no digests, MAXR2T 0).
fn icreq() -> [u8; 128] {
    let mut pdu = [0u8; 128];
    pdu[2] = 128;
    pdu[4] = 128;
    pdu
}

/// What `s_client` printed (stdout: its session summary, then what the server sent) and its
/// exit status, `None` when it was killed after [`S_CLIENT_LIMIT`] or after the ICResp came.
struct SClient {
    stdout: Vec<u8>,
    stderr: String,
    status: Option<i32>,
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `openssl s_client -tls1_3` with `psk_hex` and `identity` against `port`, sends an ICReq
/// once connected and reads until 128 bytes follow the session summary (an ICResp), the
/// server closes, or [`S_CLIENT_LIMIT`] passes.
fn s_client(port: u16, psk_hex: &str, identity: &str) -> SClient {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_3",
            "-ign_eof",
            "-psk",
            psk_hex,
            "-psk_identity",
        ])
        .arg(identity)
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // s_client sends stdin once the handshake is done; ICReq bytes wait in the pipe until then.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&icreq())
        .expect("ICReq into s_client's stdin");
    let deadline = Instant::now() + S_CLIENT_LIMIT;
    let mut out = Vec::new();
    let mut status = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                status = child.wait().ok().and_then(|s| s.code());
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if icresp(&out).is_some() || left.is_zero() {
            kill(&mut child);
            break;
        }
    }
    drop(stdin);
    SClient {
        stdout: out,
        stderr: err.join().unwrap_or_default(),
        status,
    }
}

/// The 128 bytes after the session summary's closing `---\n`, if they came.
fn icresp(out: &[u8]) -> Option<&[u8]> {
    let marker = b"Verify return code";
    let at = out.windows(marker.len()).position(|w| w == marker)?;
    let rest = &out[at..];
    let end = rest.windows(4).position(|w| w == b"---\n")? + 4;
    rest.get(end..end + 128)
}

/// The console log's lines from `from` on that tlshd wrote.
fn tlshd_lines(vm: &TlsVm, from: usize) -> Vec<String> {
    let log = std::fs::read_to_string(vm.console_log()).unwrap_or_default();
    log.lines()
        .skip(from)
        .filter(|l| l.starts_with("tlshd["))
        .map(str::to_string)
        .collect()
}

fn console_lines(vm: &TlsVm) -> usize {
    std::fs::read_to_string(vm.console_log())
        .unwrap_or_default()
        .lines()
        .count()
}

/// Waits (bounded) for a tlshd line containing `needle` after line `from`.
fn wait_tlshd(vm: &TlsVm, from: usize, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = tlshd_lines(vm, from);
        if lines.iter().any(|l| l.contains(needle)) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn plaintext_host_fails_clearly(vm: &TlsVm) {
    let mut o = Options::new(&vm.subnqn);
    o.hostnqn = HOSTNQN.to_string();
    o.timeout = Duration::from_secs(30);
    let t = Instant::now();
    let Err(err) = Controller::connect(("127.0.0.1", vm.port), &o) else {
        panic!("a plaintext host connected to a treq=required TLS port");
    };
    let msg = err.to_string();
    println!(
        "plaintext host against treq=required: failed in {:.0} ms: {msg}",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        matches!(
            err,
            Error::Connection(ConnectionError::PeerClosedBeforeIcResp)
        ),
        "{msg}"
    );
    assert!(
        msg.contains("right after the ICReq") && msg.contains("may require TLS"),
        "{msg}"
    );
}

fn tls_handshake_and_icresp(vm: &TlsVm) {
    let from = console_lines(vm);
    let t = Instant::now();
    let r = s_client(vm.port, PSK, &vm.identity());
    let text = String::from_utf8_lossy(&r.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("TLSv1.3") && l.contains("Cipher is"))
        .unwrap_or_else(|| panic!("no TLS 1.3 session: {text}\nstderr: {}", r.stderr));
    let resp = icresp(&r.stdout).unwrap_or_else(|| {
        panic!(
            "no ICResp in the TLS session: {text}\nstderr: {}\ntlshd: {:#?}",
            r.stderr,
            tlshd_lines(vm, from)
        )
    });
    println!(
        "s_client with the PSK: {:.0} ms: {summary}; ICResp {:02x?}..",
        t.elapsed().as_secs_f64() * 1e3,
        &resp[..16]
    );
    // ICResp: PDU type 1, HLEN 128, PLEN 128, PFV 0.
    assert_eq!(&resp[..8], &[0x01, 0, 128, 0, 128, 0, 0, 0]);
    assert_eq!(&resp[8..10], &[0, 0], "PFV 0");
    let log = wait_tlshd(vm, from, "was successful");
    assert!(
        log.iter().any(|l| l.contains("was successful")),
        "tlshd did not log a successful handshake: {log:#?}"
    );
}

fn wrong_key_fails(vm: &TlsVm) {
    let from = console_lines(vm);
    let t = Instant::now();
    let r = s_client(vm.port, WRONG_PSK, &vm.identity());
    let text = String::from_utf8_lossy(&r.stdout);
    println!(
        "s_client with a wrong key: {:.0} ms, exit {:?}: {}",
        t.elapsed().as_secs_f64() * 1e3,
        r.status,
        r.stderr.lines().next().unwrap_or("")
    );
    assert!(
        icresp(&r.stdout).is_none(),
        "an ICResp with a wrong key: {text}"
    );
    assert!(
        !text.contains("TLSv1.3, Cipher is TLS_"),
        "a TLS session with a wrong key: {text}"
    );
    assert_ne!(r.status, Some(0), "s_client succeeded with a wrong key");
    let log = wait_tlshd(vm, from, "failed");
    println!("  tlshd: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("Handshake with") && l.contains("failed")),
        "tlshd did not log the failed handshake: {log:#?}"
    );
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn tls_options(vm: &TlsVm, key_hex: &str) -> Options {
    let mut o = Options::new(&vm.subnqn);
    o.hostnqn = HOSTNQN.to_string();
    o.timeout = Duration::from_secs(30);
    o.digests = Digests::BOTH;
    // The VM's keyring holds the key as is under the version-0 identity.
    o.tls = Some(TlsPsk::new(&vm.identity(), &hex(key_hex)).expect("a 32-byte key"));
    o
}

fn our_tls_host_verifies(vm: &TlsVm) {
    let mut o = tls_options(vm, PSK);
    o.queues = 2;
    let t = Instant::now();
    let mut c = Controller::connect(("127.0.0.1", vm.port), &o)
        .unwrap_or_else(|e| panic!("TLS connect to the Linux target: {e}"));
    println!(
        "our host over TLS: connected in {:.0} ms ({} I/O queues)",
        t.elapsed().as_secs_f64() * 1e3,
        c.io_queues().len()
    );
    let block = u64::from(c.namespace().block_size);
    for (i, len) in [4096usize, 128 * 1024, 1 << 20].into_iter().enumerate() {
        let data: Vec<u8> = (0..len)
            .map(|j| {
                (j as u8)
                    .wrapping_mul(13)
                    .wrapping_add(i as u8 ^ (j >> 10) as u8)
            })
            .collect();
        let slba = (i as u64) * (2 << 20) / block;
        let t = Instant::now();
        c.write(slba, SgBuffer::from_vec(data.clone()))
            .unwrap_or_else(|e| panic!("write {len}: {e}"));
        let r = c
            .read(slba, SgBuffer::zeroed(len))
            .unwrap_or_else(|e| panic!("read {len}: {e}"));
        assert!(r.into_vec() == data, "read back {len} over TLS");
        println!(
            "  verify {len} bytes over TLS with digests: {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    c.close().expect("close");
}

fn our_tls_host_wrong_key_fails(vm: &TlsVm) {
    let o = tls_options(vm, WRONG_PSK);
    let Err(err) = Controller::connect(("127.0.0.1", vm.port), &o) else {
        panic!("our host connected with a wrong key");
    };
    let msg = err.to_string();
    println!("our host with a wrong key: {msg}");
    assert!(matches!(err, Error::Tls(_)), "{msg}");
    assert!(msg.contains("TLS handshake failed"), "{msg}");
}

#[test]
fn linux_nvmet_tcp_tls() {
    if !vm::have_tool("openssl") {
        return vm::unavailable("Linux NVMe/TCP TLS target VM", "openssl is not installed");
    }
    let vm = match TlsVm::start(PSK, HOSTNQN, Treq::Required) {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("Linux NVMe/TCP TLS target VM", &why),
    };
    plaintext_host_fails_clearly(&vm);
    tls_handshake_and_icresp(&vm);
    wrong_key_fails(&vm);
    our_tls_host_verifies(&vm);
    our_tls_host_wrong_key_fails(&vm);
}
