//! The embedded target's secure channel (NVMe TP 8011): TLS 1.3 with a PSK in front of the
//! plaintext target. Each TLS connection is handshaken here ([`ulp_tls::PskServer`]), then its
//! decrypted stream is relayed to the unchanged plaintext target over a loopback TCP pair, so
//! that every check the target makes holds inside TLS too. With `treq` not required, a
//! connection whose first byte is not a TLS handshake record (0x16) is served in plaintext.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ulp_tls::{PskServer, StreamError, TlsStream};

use super::{Shared, conn, lock};

/// The first byte of a TLS handshake record (content type 22).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a host may take to send its first byte and to finish the handshake.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// The TLS server of a target: its PSK and policy.
pub(super) struct Secure {
    pub(super) server: PskServer,
    pub(super) required: bool,
}

/// Serves one accepted connection: TLS, or plaintext when the policy allows it.
pub(super) fn serve(stream: TcpStream, shared: &Arc<Shared>, secure: &Secure, n: u32) {
    // As the plaintext target's sockets (conn::serve): without it, Nagle holds the relay's
    // small records (a response after a data burst) until the host's delayed ACK, ~40 ms.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE_WAIT));
    let mut first = [0u8; 1];
    let is_tls = match stream.peek(&mut first) {
        Ok(1) => first[0] == TLS_HANDSHAKE,
        _ => return,
    };
    if !is_tls {
        if secure.required {
            // As Linux's target on a treq=required port: the plaintext ICReq gets the
            // connection closed.
            lock(&shared.tls_log).push(format!(
                "conn {n}: plaintext (first byte {:#04x}) on a port that requires TLS: closed",
                first[0]
            ));
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        return conn::serve(stream, shared, n);
    }
    let _ = stream.set_write_timeout(Some(HANDSHAKE_WAIT));
    let tls = match secure.server.accept(stream) {
        Ok(tls) => tls,
        Err(e) => {
            lock(&shared.tls_log).push(format!("conn {n}: {e}"));
            return;
        }
    };
    let Ok((outer, inner)) = loopback_pair() else {
        return;
    };
    let s = Arc::clone(shared);
    let target = std::thread::Builder::new()
        .name("nvme-target-conn".into())
        .spawn(move || conn::serve(inner, &s, n));
    if target.is_ok() {
        relay(tls, outer);
    }
}

/// Two connected loopback sockets.
fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

/// Moves bytes both ways between the TLS session and the plaintext target until either ends.
/// One thread owns the session (OpenSSL's is not to be shared): it waits in poll(2) on both
/// sockets, and reads the session first whenever OpenSSL holds decrypted bytes already.
fn relay(mut tls: TlsStream<TcpStream>, mut plain: TcpStream) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let _ = tls.get_ref().set_read_timeout(Some(HANDSHAKE_WAIT));
    let _ = tls
        .get_ref()
        .set_write_timeout(Some(Duration::from_secs(60)));
    let mut buf = vec![0u8; 64 * 1024];
    let idle = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let pending = tls.pending() > 0;
        let (from_host, from_target) = {
            let mut fds = [
                PollFd::new(tls.get_ref(), PollFlags::IN),
                PollFd::new(&plain, PollFlags::IN),
            ];
            match poll(&mut fds, Some(if pending { &now } else { &idle })) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
            (
                pending || !fds[0].revents().is_empty(),
                !fds[1].revents().is_empty(),
            )
        };
        if from_host {
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
        }
        if from_target {
            match plain.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tls.shutdown();
                    break;
                }
                Ok(n) => {
                    if tls.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
    let _ = plain.shutdown(Shutdown::Both);
    let _ = tls.get_ref().shutdown(Shutdown::Both);
}
