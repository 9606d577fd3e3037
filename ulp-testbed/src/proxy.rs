//! [`Proxy`]: a fault-injecting TCP proxy on 127.0.0.1, for recovery tests. It forwards every
//! connection it accepts to one upstream address (an embedded target) and, on command, breaks
//! them the ways networks and controllers break:
//!
//! - [`cut`](Proxy::cut): every current connection is closed both ways (the host and the
//!   upstream both see the end), and new ones are refused — accepted, then closed at once —
//!   until [`restore`](Proxy::restore): a link or a controller that went away;
//! - [`stall`](Proxy::stall): bytes from upstream to the host stop flowing (they wait, neither
//!   lost nor reordered: what a forwarding thread already read is held too) while every
//!   connection stays open, new ones included, until [`unstall`](Proxy::unstall): a controller
//!   that stops answering.
//!
//! Each connection is forwarded by two threads, one per direction, each reading with a short
//! timeout so that it sees the controls; they end when the connection ends, when it is cut, or
//! when the proxy is dropped (the drop waits for them, a few tens of milliseconds).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use ulp_testbed::proxy::Proxy;
//!
//! // An upstream that echoes one message.
//! let upstream = TcpListener::bind("127.0.0.1:0")?;
//! let addr = upstream.local_addr()?;
//! std::thread::spawn(move || {
//!     let (mut s, _) = upstream.accept().expect("accept");
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).expect("read");
//!     s.write_all(&buf).expect("write");
//! });
//! let proxy = Proxy::start(addr)?;
//! let mut host = TcpStream::connect(proxy.addr())?;
//! host.write_all(b"hello")?;
//! let mut buf = [0u8; 5];
//! host.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a forwarding thread blocks in one read or write before it looks at the controls.
const TICK: Duration = Duration::from_millis(10);
/// How long the proxy waits for the upstream to accept a connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);
/// Bytes moved per read.
const CHUNK: usize = 64 * 1024;

/// A fault-injecting TCP proxy (see the [module documentation](self)). Dropping it closes every
/// connection and waits for its threads.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The proxy is being dropped.
    stop: AtomicBool,
    /// Cut: new connections are refused.
    refusing: AtomicBool,
    /// Bytes from upstream to the host are held back.
    stalled: AtomicBool,
    /// Connections forwarded now.
    live: AtomicUsize,
    /// Connections forwarded since the start.
    accepted: AtomicU64,
    /// Connections refused (accepted and closed at once) since the start.
    refused: AtomicU64,
    /// Every connection forwarded, while it lasts.
    links: Mutex<Vec<Arc<Link>>>,
    /// The forwarding threads, joined when the proxy is dropped.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// One forwarded connection: the host's socket and the upstream's.
#[derive(Debug)]
struct Link {
    host: TcpStream,
    upstream: TcpStream,
    closed: AtomicBool,
}

impl Link {
    /// Closes both sockets both ways (once); the forwarding threads see it and end.
    fn close(&self, shared: &Shared) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.host.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
            shared.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection it accepts to `upstream`.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound or its thread started.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(&listener, upstream, &s))?;
        Ok(Self {
            addr,
            upstream,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address to connect to instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Closes every current connection both ways and refuses new ones (accepts and closes
    /// them at once) until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        for link in lock(&self.shared.links).iter() {
            link.close(&self.shared);
        }
    }

    /// Forwards new connections again after [`cut`](Self::cut) (the cut ones stay closed).
    pub fn restore(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// Whether connections are refused ([`cut`](Self::cut) and not restored).
    pub fn is_cut(&self) -> bool {
        self.shared.refusing.load(Ordering::SeqCst)
    }

    /// Stops forwarding bytes from upstream to the host, on every connection, new ones
    /// included, while keeping them open: the host sees a controller that stops answering.
    /// Every byte the proxy reads from upstream after this returns waits (in the proxy, and
    /// what follows in the upstream's socket) until [`unstall`](Self::unstall).
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards upstream's bytes again, those held back first.
    pub fn unstall(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    /// Whether upstream's bytes are held back ([`stall`](Self::stall)).
    pub fn is_stalled(&self) -> bool {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Connections forwarded now.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Connections forwarded since the start (refused ones not counted).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused while cut since the start.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        // The acceptor has ended: no link or thread is added from now on.
        for link in std::mem::take(&mut *lock(&self.shared.links)) {
            link.close(&self.shared);
        }
        for h in std::mem::take(&mut *lock(&self.shared.threads)) {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((host, _)) => {
                if shared.refusing.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = host.shutdown(Shutdown::Both);
                    continue;
                }
                if let Err(()) = forward(host, upstream, shared) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Connects to the upstream for `host` and starts the two forwarding threads.
fn forward(host: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) -> Result<(), ()> {
    let up = TcpStream::connect_timeout(&upstream, UPSTREAM_CONNECT).map_err(|_| ())?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TICK))?;
        s.set_write_timeout(Some(TICK))
    };
    setup(&host).map_err(|_| ())?;
    setup(&up).map_err(|_| ())?;
    let clone = |s: &TcpStream| s.try_clone().map_err(|_| ());
    let link = Arc::new(Link {
        host: clone(&host)?,
        upstream: clone(&up)?,
        closed: AtomicBool::new(false),
    });
    let (host_r, host_w) = (clone(&host)?, host);
    let (up_r, up_w) = (clone(&up)?, up);
    shared.live.fetch_add(1, Ordering::SeqCst);
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let mut links = lock(&shared.links);
    links.retain(|l| !l.closed.load(Ordering::SeqCst));
    links.push(Arc::clone(&link));
    drop(links);
    let mut threads = lock(&shared.threads);
    threads.retain(|h| !h.is_finished());
    for (from, to, to_host) in [(host_r, up_w, false), (up_r, host_w, true)] {
        let (l, s) = (Arc::clone(&link), Arc::clone(shared));
        let spawned = std::thread::Builder::new()
            .name(
                if to_host {
                    "proxy-to-host"
                } else {
                    "proxy-to-up"
                }
                .into(),
            )
            .spawn(move || {
                pump(from, to, to_host, &l, &s);
                l.close(&s);
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(_) => {
                link.close(shared);
                return Err(());
            }
        }
    }
    Ok(())
}

/// Whether this direction should stop: the connection closed, or the proxy is being dropped.
fn ended(link: &Link, shared: &Shared) -> bool {
    link.closed.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst)
}

/// Forwards `from` to `to` until either ends, the link is closed, or the proxy stops; bytes to
/// the host wait while the proxy is stalled.
fn pump(mut from: TcpStream, mut to: TcpStream, to_host: bool, link: &Link, shared: &Shared) {
    let stalled = || to_host && shared.stalled.load(Ordering::SeqCst);
    let mut buf = vec![0u8; CHUNK];
    while !ended(link, shared) {
        if stalled() {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if is_retry(&e) => continue,
            Err(_) => return,
        };
        // A stall that began while the read waited holds what it read, too.
        while stalled() {
            if ended(link, shared) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if ended(link, shared) {
                return;
            }
            match to.write(rest) {
                Ok(0) => return,
                Ok(k) => rest = &rest[k..],
                Err(e) if is_retry(&e) => {}
                Err(_) => return,
            }
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An upstream that echoes every connection until it ends.
    fn echo() -> (SocketAddr, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        std::thread::spawn(move || {
                            let _ = c.set_nonblocking(false);
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = c.read(&mut buf) {
                                if n == 0 || c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        (addr, stop)
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn round_trip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back)?;
        Ok(back)
    }

    fn connect(p: &Proxy) -> TcpStream {
        let s = TcpStream::connect(p.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    #[test]
    fn forwards_cuts_refuses_and_restores() {
        let (up, stop) = echo();
        let p = Proxy::start(up).expect("proxy");
        assert_eq!(p.upstream(), up);
        let mut a = connect(&p);
        let mut b = connect(&p);
        assert_eq!(round_trip(&mut a, b"one").expect("a"), b"one");
        assert_eq!(round_trip(&mut b, b"two").expect("b"), b"two");
        assert_eq!((p.connections(), p.accepted()), (2, 2));

        p.cut();
        assert!(p.is_cut());
        assert_eq!(p.connections(), 0);
        for s in [&mut a, &mut b] {
            let mut buf = [0u8; 1];
            // The end of the stream (or a reset, had the host sent something).
            assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
        }
        // Refused while cut: accepted, then closed at once.
        let mut c = connect(&p);
        assert!(round_trip(&mut c, b"three").is_err());
        until("refused", || p.refused() == 1);
        assert_eq!(p.accepted(), 2);

        p.restore();
        let mut d = connect(&p);
        assert_eq!(round_trip(&mut d, b"four").expect("d"), b"four");
        assert_eq!((p.connections(), p.accepted()), (1, 3));
        // The host closing its end closes the link.
        drop(d);
        until("closed", || p.connections() == 0);
        stop.store(true, Ordering::SeqCst);
    }

    #[test]
    fn stall_holds_the_answers_and_unstall_delivers_them() {
        let (up, stop) = echo();
        let p = Proxy::start(up).expect("proxy");
        let mut a = connect(&p);
        assert_eq!(round_trip(&mut a, b"before").expect("a"), b"before");
        p.stall();
        assert!(p.is_stalled());
        a.write_all(b"held").expect("write");
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        let e = a.read(&mut buf).expect_err("nothing while stalled");
        assert!(is_retry(&e), "{e}");
        // New connections are stalled too, and stay open.
        let mut b = connect(&p);
        b.write_all(b"new").expect("write");
        until("two links", || p.connections() == 2);
        p.unstall();
        a.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        a.read_exact(&mut buf).expect("delivered");
        assert_eq!(&buf, b"held");
        let mut buf = [0u8; 3];
        b.read_exact(&mut buf).expect("delivered");
        assert_eq!(&buf, b"new");
        stop.store(true, Ordering::SeqCst);
    }

    #[test]
    fn drop_ends_every_thread_quickly() {
        let (up, stop) = echo();
        let p = Proxy::start(up).expect("proxy");
        let mut a = connect(&p);
        assert_eq!(round_trip(&mut a, b"x").expect("a"), b"x");
        p.stall();
        let _b = connect(&p);
        until("two links", || p.connections() == 2);
        let shared = Arc::clone(&p.shared);
        let t = Instant::now();
        drop(p);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(lock(&shared.threads).is_empty());
        assert_eq!(shared.live.load(Ordering::SeqCst), 0);
        let mut buf = [0u8; 1];
        assert!(matches!(a.read(&mut buf), Ok(0) | Err(_)));
        stop.store(true, Ordering::SeqCst);
    }
}
