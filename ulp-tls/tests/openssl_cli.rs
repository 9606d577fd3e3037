//! Against OpenSSL's own server: `openssl s_server -tls1_3 -nocert -psk HEX -psk_identity ID`.
//! Without the `openssl` binary the test says why and passes, unless ULP_REQUIRE_PEERS=1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::{LIMIT, bounded};
use ulp_tls::{HandshakeError, PskClient, Role};

const IDENTITY: &str = "NVMe0R01 host subsystem";
const KEY: [u8; 32] = [0x3c; 32];

struct Server {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn expect(&self, what: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("s_server never printed {what:?}"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

fn s_server() -> Option<Server> {
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let spawned = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-tls1_3",
            "-nocert",
            "-naccept",
            "1",
        ])
        .args(["-psk", &hex, "-psk_identity", IDENTITY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("ULP_REQUIRE_PEERS").as_deref() != Ok("1"),
                "the openssl binary cannot run ({e}) and ULP_REQUIRE_PEERS=1"
            );
            eprintln!("skipped: the openssl binary cannot run ({e}); install openssl");
            return None;
        }
    };
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        lines,
        port: 0,
    };
    let accept = server.expect("ACCEPT");
    server.port = accept.rsplit(':').next().unwrap().trim().parse().unwrap();
    Some(server)
}

#[test]
fn data_both_ways_with_openssl_s_server() {
    let Some(mut server) = s_server() else { return };
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    bounded(&tcp);
    let mut tls = PskClient::new(IDENTITY.as_bytes(), &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap();
    assert_eq!(tls.cipher_suite(), Some("TLS_AES_128_GCM_SHA256"));
    tls.write_all(b"ping from ulp-tls\n").unwrap();
    server.expect("ping from ulp-tls");
    let stdin = server.child.stdin.as_mut().unwrap();
    stdin.write_all(b"pong from s_server\n").unwrap();
    stdin.flush().unwrap();
    let mut pong = [0u8; 19];
    tls.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong from s_server\n");
    tls.shutdown().unwrap();
    let mut rest = Vec::new();
    // s_server answers close_notify with its own (or just closes): either way no error here.
    let _ = tls.read_to_end(&mut rest);
}

#[test]
fn wrong_key_against_openssl_s_server() {
    let Some(server) = s_server() else { return };
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    bounded(&tcp);
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let error = PskClient::new(IDENTITY.as_bytes(), &[0x11; 32])
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    assert!(
        matches!(
            error,
            HandshakeError::WrongKey {
                role: Role::Client,
                ..
            }
        ),
        "{error:?}"
    );
    drop(server);
}
