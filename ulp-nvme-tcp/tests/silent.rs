//! Controllers that stop answering, or stop reading: the blocking driver gives up at its
//! timeout with an error that says what it waited for, how long, and on which queue; it never
//! hangs and never says "os error 11".

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ulp_ddp_core::{NoOffload, QueueId, SgBuffer};
use ulp_nvme_tcp::blocking::{Connection, Error};
use ulp_nvme_tcp::wire::{Digests, IcRespRepr, Pda};
use ulp_nvme_tcp::{ConnectionConfig, Data, nvme};
use ulp_testbed::scripted::ScriptedPeer;

const TIMEOUT: Duration = Duration::from_millis(400);

fn io_queue() -> ConnectionConfig {
    ConnectionConfig::io(QueueId(1), 1, 32, Digests::NONE)
}

fn read_icreq(s: &mut std::net::TcpStream) {
    let mut icreq = [0u8; 128];
    s.read_exact(&mut icreq).expect("ICReq");
    assert_eq!(icreq[0], 0x00, "an ICReq opens the connection");
}

#[test]
fn a_controller_that_never_answers_icreq_is_a_timeout_in_words() {
    let peer = ScriptedPeer::start(read_icreq);
    let t = Instant::now();
    let err = Connection::connect(peer.addr(), NoOffload, io_queue(), TIMEOUT).unwrap_err();
    let waited = t.elapsed();
    peer.finish();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        err.to_string(),
        "no answer from the controller in 0.4 s while waiting for ICResp on I/O queue 1"
    );
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

/// What a `treq=required` TLS port does to a plaintext host (the Linux one, in
/// `linux_tls_target.rs`): reads the ICReq and closes. The error names the ICReq and says that
/// TLS may be required, without claiming it.
#[test]
fn a_controller_that_closes_after_icreq_says_so_and_that_tls_may_be_required() {
    let peer = ScriptedPeer::start(|s| {
        read_icreq(s);
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let err = Connection::connect(peer.addr(), NoOffload, io_queue(), TIMEOUT).unwrap_err();
    peer.finish();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Connection(ulp_nvme_tcp::ConnectionError::PeerClosedBeforeIcResp)
        ),
        "{msg}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(
        msg.contains("closed the connection right after the ICReq, without an ICResp")
            && msg.contains("may require TLS"),
        "{msg}"
    );
}

#[test]
fn a_controller_that_stops_reading_is_a_timeout_in_words() {
    let peer = ScriptedPeer::start(|s| {
        read_icreq(s);
        let mut icresp = Vec::new();
        IcRespRepr {
            cpda: Pda::ZERO,
            digests: Digests::NONE,
            maxh2cdata: 131_072,
        }
        .emit(&mut icresp)
        .expect("ICResp");
        s.write_all(&icresp).expect("send ICResp");
        // Then it reads nothing more: its receive window fills.
    });
    let mut c = Connection::connect(peer.addr(), NoOffload, io_queue(), TIMEOUT).expect("connect");
    // An in-capsule write far larger than both sockets' buffers.
    let len = 16usize << 20;
    c.connection_mut().set_in_capsule_limit(len);
    c.submit(
        nvme::write(1, 0, (len / 512) as u32),
        Data::Write(SgBuffer::zeroed(len)),
    )
    .expect("submit");
    let t = Instant::now();
    let err = c.flush().unwrap_err();
    let waited = t.elapsed();
    drop(c);
    peer.finish();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        err.to_string(),
        "no answer from the controller in 0.4 s while waiting for the controller to read what \
         the host sends on I/O queue 1 (its TCP receive window stayed full)"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}
