//! Loopback pairs for the tests: a server thread on 127.0.0.1 port 0, every socket bounded by a
//! 10 s timeout.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

pub const IDENTITY: &[u8] =
    b"NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:host nqn.2024-01.io.ulp-ddp:vm";
pub const KEY: [u8; 32] = [0x5a; 32];
pub const LIMIT: Duration = Duration::from_secs(10);

pub fn bounded(tcp: &TcpStream) {
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.set_write_timeout(Some(LIMIT)).unwrap();
}

/// Starts `serve` on the next accepted connection; returns the client's connected socket.
pub fn pair<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (TcpStream, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        bounded(&tcp);
        serve(tcp)
    });
    let tcp = TcpStream::connect(address).unwrap();
    bounded(&tcp);
    (tcp, server)
}

/// A server that knows `KEY` for `IDENTITY`.
pub fn server() -> ulp_tls::PskServer {
    ulp_tls::PskServer::new(|identity: &[u8]| (identity == IDENTITY).then(|| KEY.to_vec())).unwrap()
}

/// Ends a raw connection politely: FIN, then wait for the peer's close (so no RST loses data).
pub fn finish(mut tcp: &TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
}
