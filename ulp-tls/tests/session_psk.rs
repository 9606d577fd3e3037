//! PSKs through OpenSSL's session callbacks (src/ffi.rs): SHA-384 PSKs with
//! `TLS_AES_256_GCM_SHA384`, identities far over 256 bytes (NVMe version-1 identities with long
//! NQNs), wrong keys, and a lookup that panics.

mod common;

use std::io::{Read, Write};

use common::pair;
use ulp_tls::{HandshakeError, PskClient, PskHash, PskServer, Role};

const KEY_384: [u8; 48] = [0xc3; 48];
const KEY_256: [u8; 32] = [0x5a; 32];

/// A version-1 style identity of exactly `len` bytes (a long host NQN padded out).
fn long_identity(len: usize) -> Vec<u8> {
    let mut identity = b"NVMe1R02 nqn.2014-08.org.nvmexpress:uuid:".to_vec();
    identity.extend(
        (0..)
            .map(|i| b'a' + (i % 26) as u8)
            .take(len - identity.len()),
    );
    identity
}

/// A server knowing `identity` with a SHA-384 key and `"sha256"` with a SHA-256 one; it echoes
/// 5 bytes and reports the suite and the identity length it saw.
fn serve(
    identity: Vec<u8>,
) -> impl FnOnce(std::net::TcpStream) -> (Option<&'static str>, usize) + Send + 'static {
    move |tcp| {
        let server = PskServer::with_hashes(move |offered: &[u8]| {
            if offered == identity.as_slice() {
                Some((KEY_384.to_vec(), PskHash::Sha384))
            } else if offered == b"sha256" {
                Some((KEY_256.to_vec(), PskHash::Sha256))
            } else {
                None
            }
        })
        .unwrap();
        let mut tls = server.accept(tcp).unwrap();
        let mut echo = [0u8; 5];
        tls.read_exact(&mut echo).unwrap();
        tls.write_all(&echo).unwrap();
        tls.shutdown().unwrap();
        (tls.cipher_suite(), echo.len())
    }
}

fn round_trip(client: &PskClient, tcp: std::net::TcpStream) -> Option<&'static str> {
    let mut tls = client.connect(tcp).unwrap();
    tls.write_all(b"hello").unwrap();
    let mut echo = [0u8; 5];
    tls.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello");
    tls.cipher_suite()
}

#[test]
fn sha384_psk_uses_aes_256_gcm_sha384_on_both_sides() {
    let identity = b"NVMe1R02 nqn.host nqn.subsystem".to_vec();
    let (tcp, server) = pair(serve(identity.clone()));
    let client = PskClient::with_hash(&identity, &KEY_384, PskHash::Sha384).unwrap();
    assert_eq!(round_trip(&client, tcp), Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(server.join().unwrap(), (Some("TLS_AES_256_GCM_SHA384"), 5));
}

#[test]
fn one_server_serves_sha256_and_sha384_psks() {
    let (tcp, server) = pair(serve(b"unused".to_vec()));
    let client = PskClient::new(b"sha256", &KEY_256).unwrap();
    assert_eq!(round_trip(&client, tcp), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(server.join().unwrap().0, Some("TLS_AES_128_GCM_SHA256"));
}

#[test]
fn a_600_byte_identity_with_each_hash() {
    let identity = long_identity(600);
    assert_eq!(identity.len(), 600);
    let (tcp, server) = pair(serve(identity.clone()));
    let client = PskClient::with_hash(&identity, &KEY_384, PskHash::Sha384).unwrap();
    assert_eq!(round_trip(&client, tcp), Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(server.join().unwrap().0, Some("TLS_AES_256_GCM_SHA384"));

    let (tcp, server) = pair(move |tcp| {
        let server =
            PskServer::new(move |offered: &[u8]| (offered == identity).then(|| KEY_256.to_vec()))
                .unwrap();
        let mut tls = server.accept(tcp).unwrap();
        tls.write_all(b"hello").unwrap();
        tls.cipher_suite()
    });
    let mut tls = PskClient::new(&long_identity(600), &KEY_256)
        .unwrap()
        .connect(tcp)
        .unwrap();
    let mut hello = [0u8; 5];
    tls.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    assert_eq!(server.join().unwrap(), Some("TLS_AES_128_GCM_SHA256"));
}

#[test]
fn the_longest_identity_tls_carries() {
    let identity = long_identity(ulp_tls::MAX_IDENTITY_LEN);
    let (tcp, server) = pair(serve(identity.clone()));
    let client = PskClient::with_hash(&identity, &KEY_384, PskHash::Sha384).unwrap();
    assert_eq!(round_trip(&client, tcp), Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(server.join().unwrap().0, Some("TLS_AES_256_GCM_SHA384"));
}

#[test]
fn a_wrong_sha384_key_is_named_on_both_sides() {
    let identity = long_identity(600);
    let expected = String::from_utf8(identity.clone()).unwrap();
    let (tcp, server) = pair({
        let identity = identity.clone();
        move |tcp| {
            PskServer::with_hashes(move |offered: &[u8]| {
                (offered == identity.as_slice()).then(|| (KEY_384.to_vec(), PskHash::Sha384))
            })
            .unwrap()
            .accept(tcp)
            .unwrap_err()
        }
    });
    let client = PskClient::with_hash(&identity, &[0x11; 48], PskHash::Sha384).unwrap();
    let client_error = client.connect(tcp).unwrap_err();
    let server_error = server.join().unwrap();
    match &client_error {
        HandshakeError::WrongKey {
            role: Role::Client,
            identity,
            alert: Some(_),
        } => assert_eq!(identity, &expected),
        other => panic!("client: {other:?}"),
    }
    match &server_error {
        HandshakeError::WrongKey {
            role: Role::Server,
            identity,
            ..
        } => assert_eq!(identity, &expected),
        other => panic!("server: {other:?}"),
    }
    assert!(client_error.to_string().contains("the key differs"));
    assert!(server_error.to_string().contains("holds a different key"));
}

#[test]
fn an_unknown_long_identity_is_named_by_the_server() {
    let (tcp, server) = pair(|tcp| {
        PskServer::with_hashes(|_: &[u8]| None)
            .unwrap()
            .accept(tcp)
            .unwrap_err()
    });
    let identity = long_identity(700);
    let _ = PskClient::with_hash(&identity, &KEY_384, PskHash::Sha384)
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    match server.join().unwrap() {
        HandshakeError::UnknownIdentity { identity: seen } => {
            assert_eq!(seen.as_bytes(), identity.as_slice())
        }
        other => panic!("server: {other:?}"),
    }
}

#[test]
fn a_panicking_lookup_fails_the_handshake_without_unwinding_into_openssl() {
    let (tcp, server) = pair(|tcp| {
        PskServer::with_hashes(|_: &[u8]| panic!("lookup failed on purpose"))
            .unwrap()
            .accept(tcp)
            .map(|_| ())
    });
    let client = PskClient::with_hash(b"NVMe1R02 h s", &KEY_384, PskHash::Sha384).unwrap();
    assert!(client.connect(tcp).is_err());
    let server_result = server.join().expect("the server thread did not panic");
    assert!(server_result.is_err());
}
