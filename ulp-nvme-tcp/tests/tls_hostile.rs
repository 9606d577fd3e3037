//! Hostile TLS through the NVMe/TCP host: a truncated record, a record longer than TLS allows,
//! a fatal alert and a close_notify, each arriving in the middle of a C2HData PDU while the
//! blocking `Controller` over TLS has reads in flight with registered buffers (a software DDP
//! backend: the payload is placed straight into the commands' buffers).
//!
//! How the faults are made: a proxy between the host and the embedded (plaintext) target
//! terminates TLS. Facing the host it is a `ulp_tls::PskServer` with the host's PSK, facing the
//! target a plain TCP connection, so it holds the NVMe/TCP plaintext and counts the bytes the
//! target sends. Once an I/O queue has carried [`FAULT_AT`] bytes to the host (inside the
//! payload of a 256 KiB read: mid-PDU) the proxy forwards the first part of that chunk
//! encrypted as usual, then:
//! - **truncated**: writes a record header announcing 16 401 bytes and only 1000 of them on the
//!   raw TCP connection, then closes it (the host's OpenSSL meets end of stream inside a record);
//! - **oversize**: writes a record header announcing 18 433 bytes, over TLS 1.3's 2^14 + 256;
//! - **alert**: a real encrypted fatal alert. The proxy cannot encrypt an alert of its choice
//!   through the `openssl` crate, so it makes its own OpenSSL send one: it feeds its TLS server
//!   a forged application-data record (as if from the host); OpenSSL fails to authenticate it
//!   and sends `bad_record_mac` (20), encrypted under the session's keys, to the host;
//! - **close_notify**: shuts its TLS session down (an encrypted close_notify) mid-PDU.
//!
//! The fault comes once (the next connections relay normally), so the host recovers as from a
//! TCP loss: the association is reset (the event names the TLS problem), every buffer comes back
//! through the engine's release, the host reconnects (a new handshake) and issues the reads
//! again, which then complete with the right data. A second test never lets the host back
//! (the proxy refuses connections after the fault): every read fails after ctrl_loss_tmo, in
//! words, with its buffer.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ulp_backend_sw::SwBackend;
use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::{CommandId, Controller, ControllerEvent, Io, IoError, Options};
use ulp_nvme_tcp::psk::TlsPsk;
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig};
use ulp_tls::{PskServer, StreamError, TlsStream};

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:7f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b";
const KEY: [u8; 32] = [0x3c; 32];
/// Target-to-host plaintext bytes on a connection after which the fault comes: inside the
/// payload of the first 256 KiB read (the connection's earlier PDUs are far smaller).
const FAULT_AT: usize = 100_001;
/// The reads in flight when the fault comes.
const READS: usize = 8;
const LEN: usize = 256 * 1024;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Truncated,
    Oversize,
    Alert,
    CloseNotify,
}

/// The host-facing transport of the proxy's TLS server: the TCP connection, with bytes the
/// proxy slips in front of what the host sent (a forged record).
struct Tap {
    tcp: TcpStream,
    forged: Vec<u8>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.forged.is_empty() {
            return self.tcp.read(buf);
        }
        let n = buf.len().min(self.forged.len());
        buf[..n].copy_from_slice(&self.forged[..n]);
        self.forged.drain(..n);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// The TLS-terminating proxy (see the module docs).
struct HostileProxy {
    addr: SocketAddr,
    /// Set until the fault has been injected once.
    armed: Arc<AtomicBool>,
}

impl HostileProxy {
    /// A proxy to `target` that injects `fault` once; with `refuse_after`, every connection
    /// after the fault is closed at once (the target never comes back).
    fn start(target: SocketAddr, identity: String, fault: Fault, refuse_after: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let armed = Arc::new(AtomicBool::new(true));
        let server = Arc::new(
            PskServer::new(move |id: &[u8]| (id == identity.as_bytes()).then(|| KEY.to_vec()))
                .expect("server"),
        );
        let a = Arc::clone(&armed);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                if refuse_after && !a.load(Ordering::SeqCst) {
                    let _ = tcp.shutdown(Shutdown::Both);
                    continue;
                }
                let (server, armed) = (Arc::clone(&server), Arc::clone(&a));
                std::thread::spawn(move || relay(&server, tcp, target, fault, &armed));
            }
        });
        Self { addr, armed }
    }

    fn injected(&self) -> bool {
        !self.armed.load(Ordering::SeqCst)
    }
}

/// One connection: the handshake with the host, then bytes both ways (polling each side with a
/// short timeout; one thread owns the TLS session), the fault once the target has sent
/// [`FAULT_AT`] bytes on this connection.
fn relay(server: &PskServer, tcp: TcpStream, target: SocketAddr, fault: Fault, armed: &AtomicBool) {
    let tick = Some(Duration::from_millis(2));
    let Ok(mut tls) = server.accept(Tap {
        tcp,
        forged: Vec::new(),
    }) else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(target) else {
        return;
    };
    let _ = tls.get_ref().tcp.set_read_timeout(tick);
    let _ = plain.set_read_timeout(tick);
    let _ = plain.set_nodelay(true);
    let _ = tls.get_ref().tcp.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut to_host = 0usize;
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if plain.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(StreamError::of(&e), Some(StreamError::TimedOut)) => {}
            Err(_) => break,
        }
        let n = match plain.read(&mut buf) {
            Ok(0) => {
                let _ = tls.shutdown();
                break;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if to_host + n >= FAULT_AT && armed.swap(false, Ordering::SeqCst) {
            let before = FAULT_AT - to_host;
            if tls.write_all(&buf[..before]).is_ok() {
                inject(&mut tls, fault);
            }
            break;
        }
        to_host += n;
        if tls.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = plain.shutdown(Shutdown::Both);
    let _ = tls.get_ref().tcp.shutdown(Shutdown::Both);
}

fn inject(tls: &mut TlsStream<Tap>, fault: Fault) {
    let raw = |tls: &mut TlsStream<Tap>, bytes: &[u8]| {
        let _ = tls.get_mut().tcp.write_all(bytes);
    };
    match fault {
        Fault::Truncated => {
            // Application data, 0x4011 = 16 401 bytes announced (legal), 1000 sent.
            let mut record = vec![23, 3, 3, 0x40, 0x11];
            record.extend(std::iter::repeat_n(0xa5, 1000));
            raw(tls, &record);
        }
        Fault::Oversize => {
            // 0x4801 = 18 433 bytes announced: over 2^14 + 256.
            let mut record = vec![23, 3, 3, 0x48, 0x01];
            record.extend(std::iter::repeat_n(0xa5, 64));
            raw(tls, &record);
        }
        Fault::Alert => {
            // A forged record "from the host": the proxy's OpenSSL cannot authenticate it and
            // answers with an encrypted fatal bad_record_mac alert to the host.
            let mut record = vec![23, 3, 3, 0, 40];
            record.extend(std::iter::repeat_n(0x5a, 40));
            tls.get_mut().forged = record;
            let mut sink = [0u8; 1024];
            let failed = tls.read(&mut sink);
            assert!(failed.is_err(), "the forged record was refused");
        }
        Fault::CloseNotify => {
            tls.shutdown().expect("close_notify sent");
        }
    }
    // The host sees the fault before the TCP connection ends.
    std::thread::sleep(Duration::from_millis(50));
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

/// The target, the proxy in front of it, and a host (software DDP backend, both digests) over
/// TLS through the proxy with the target's blocks written (before the fault is armed for
/// reads: writes carry little target-to-host data).
fn setup(fault: Fault, refuse_after: bool) -> (Target, HostileProxy, Controller<SwBackend>) {
    let target = Target::start(TargetConfig::default()).expect("target");
    let identity = format!("NVMe0R01 {HOSTNQN} {}", target.subnqn());
    let proxy = HostileProxy::start(target.addr(), identity.clone(), fault, refuse_after);
    let mut o = Options::new(target.subnqn());
    o.hostnqn = HOSTNQN.to_string();
    o.digests = Digests::BOTH;
    o.timeout = Duration::from_secs(10);
    o.ctrl_loss_tmo = Duration::from_secs(2);
    o.reconnect_delay = Duration::from_millis(100);
    o.tls = Some(TlsPsk::new(&identity, &KEY).expect("a 32-byte key"));
    let mut c =
        Controller::connect_with(proxy.addr, &o, |_| SwBackend::new()).expect("connect over TLS");
    for i in 0..READS {
        let data = pattern(LEN, i as u8);
        c.write(slba(i), SgBuffer::from_vec(data)).expect("write");
    }
    (target, proxy, c)
}

fn slba(i: usize) -> u64 {
    i as u64 * 1024
}

/// The words each fault must be named with in the host's reset reason.
fn named(fault: Fault) -> &'static str {
    match fault {
        Fault::Truncated => "truncated record",
        Fault::Oversize => "over the maximum of 16640",
        Fault::Alert => "bad_record_mac",
        Fault::CloseNotify => "close_notify",
    }
}

fn submit_reads(c: &mut Controller<SwBackend>) -> HashMap<CommandId, usize> {
    (0..READS)
        .map(|i| {
            let io = Io::Read {
                slba: slba(i),
                buffer: SgBuffer::zeroed(LEN),
            };
            (c.submit(io).expect("submit"), i)
        })
        .collect()
}

/// The fault once: reset naming it, every buffer back, reconnect, the reads done again right.
fn recovers(fault: Fault) {
    let (target, proxy, mut c) = setup(fault, false);
    let mut reads = submit_reads(&mut c);
    while !reads.is_empty() {
        let done = c.wait(None).expect("a completion");
        let i = reads.remove(&done.id).expect("a read of the run");
        assert!(done.result.is_ok(), "{fault:?}: {:?}", done.error_message());
        let got = done.buffer.expect("the buffer comes back").into_vec();
        assert!(got == pattern(LEN, i as u8), "{fault:?}: read {i} right");
    }
    assert!(proxy.injected(), "{fault:?}: the fault came");
    let events = c.take_events();
    let reason = events
        .iter()
        .find_map(|e| match e {
            ControllerEvent::Reset { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{fault:?}: no reset in {events:?}"));
    println!("{fault:?}: reset: {reason}");
    assert!(reason.contains(named(fault)), "{fault:?}: {reason}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ControllerEvent::Reconnected { .. })),
        "{fault:?}: {events:?}"
    );
    assert_eq!(c.reconnects(), 1, "{fault:?}");
    assert_eq!(c.outstanding(), 0);
    assert_eq!(target.violations(), Vec::<String>::new());
    c.close().expect("close");
}

#[test]
fn truncated_record_mid_pdu_recovers() {
    recovers(Fault::Truncated);
}

#[test]
fn oversize_record_mid_pdu_recovers() {
    recovers(Fault::Oversize);
}

#[test]
fn alert_mid_pdu_recovers() {
    recovers(Fault::Alert);
}

#[test]
fn close_notify_mid_pdu_recovers() {
    recovers(Fault::CloseNotify);
}

/// The fault, then no way back: every read fails after ctrl_loss_tmo, in words naming the TLS
/// problem and the read, with its buffer.
#[test]
fn alert_mid_pdu_then_lost_hands_every_buffer_back() {
    let (_target, proxy, mut c) = setup(Fault::Alert, true);
    let mut reads = submit_reads(&mut c);
    while !reads.is_empty() {
        let done = c.wait(None).expect("a completion");
        reads.remove(&done.id).expect("a read of the run");
        let buffer = done.buffer.as_ref().expect("the buffer comes back");
        assert_eq!(buffer.len(), LEN as u64);
        match &done.result {
            Err(IoError::Lost(reason)) => {
                let msg = done.error_message().expect("a message");
                println!("lost: {msg}");
                assert!(reason.contains("ctrl_loss_tmo"), "{msg}");
                assert!(msg.contains(&format!("Read of {LEN} bytes")), "{msg}");
            }
            other => panic!("a read completed with the target unreachable: {other:?}"),
        }
    }
    assert!(proxy.injected());
    let events = c.take_events();
    assert!(
        events.iter().any(
            |e| matches!(e, ControllerEvent::Reset { reason } if reason.contains("bad_record_mac"))
        ),
        "{events:?}"
    );
    assert_eq!(c.outstanding(), 0);
    c.close().expect("closing a lost controller");
}
