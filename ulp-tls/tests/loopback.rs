//! Client and server of this crate over 127.0.0.1: handshakes, data both ways, wrong keys,
//! peers that do not speak TLS, timeouts.

mod common;

use std::io::{Read, Write};

use common::{IDENTITY, KEY, finish, pair, server};
use ulp_tls::{CipherSuite, ConfigError, HandshakeError, PskClient, PskServer, Role, StreamError};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_mebibyte_each_way_in_large_reads() {
    const LEN: usize = 1 << 20;
    let (tcp, server) = pair(|tcp| {
        let mut tls = server().accept(tcp).unwrap();
        let mut got = vec![0u8; LEN];
        tls.read_exact(&mut got).unwrap();
        assert_eq!(got, pattern(LEN, 1), "server received the client's bytes");
        tls.write_all(&pattern(LEN, 2)).unwrap();
        tls.shutdown().unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).unwrap();
        (tls.cipher_suite(), rest.len(), tls.peer_closed())
    });
    let mut tls = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap();
    assert_eq!(tls.role(), Role::Client);
    tls.write_all(&pattern(LEN, 1)).unwrap();
    // One caller buffer of 1 MiB, filled by reads of up to a record each.
    let mut got = vec![0u8; LEN];
    let mut filled = 0;
    let mut reads = 0;
    while filled < LEN {
        let n = tls.read(&mut got[filled..]).unwrap();
        assert!(
            n > 0 && n <= 1 << 14,
            "a read gives at most one record's plaintext: {n}"
        );
        filled += n;
        reads += 1;
    }
    assert_eq!(got, pattern(LEN, 2), "client received the server's bytes");
    assert!(reads >= LEN / (1 << 14));
    assert_eq!(
        tls.read(&mut [0u8; 16]).unwrap(),
        0,
        "close_notify reads as the end"
    );
    assert!(tls.peer_closed());
    tls.shutdown().unwrap();
    let (suite, rest, server_saw_close) = server.join().unwrap();
    assert_eq!(suite, Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(rest, 0);
    assert!(server_saw_close);
    assert_eq!(tls.cipher_suite(), Some("TLS_AES_128_GCM_SHA256"));
}

#[test]
fn each_cipher_suite_configuration() {
    // TLS_AES_128_GCM_SHA256 alone, on both sides.
    let only_128 = [CipherSuite::Aes128GcmSha256];
    let (tcp, server) = pair(move |tcp| {
        let server = PskServer::with_cipher_suites(
            |id: &[u8]| (id == IDENTITY).then(|| KEY.to_vec()),
            &only_128,
        )
        .unwrap();
        let mut tls = server.accept(tcp).unwrap();
        tls.write_all(b"ok").unwrap();
        tls.cipher_suite()
    });
    let mut tls = PskClient::with_cipher_suites(IDENTITY, &KEY, &only_128)
        .unwrap()
        .connect(tcp)
        .unwrap();
    let mut ok = [0u8; 2];
    tls.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"ok");
    assert_eq!(server.join().unwrap(), Some("TLS_AES_128_GCM_SHA256"));
    // TLS_AES_256_GCM_SHA384 alone needs a SHA-384 PSK: refused up front, in words.
    let only_384 = [CipherSuite::Aes256GcmSha384];
    let error = PskClient::with_cipher_suites(IDENTITY, &KEY, &only_384).unwrap_err();
    assert_eq!(error, ConfigError::NoSha256Suite);
    assert!(error.to_string().contains("SHA-384 PSK"), "{error}");
    let error = PskServer::with_cipher_suites(|_: &[u8]| None, &only_384).unwrap_err();
    assert_eq!(error, ConfigError::NoSha256Suite);
}

#[test]
fn bad_configurations_are_refused_and_keys_never_printed() {
    assert_eq!(
        PskClient::new(b"", &KEY).unwrap_err(),
        ConfigError::Identity { length: 0 }
    );
    // Identities are opaque bytes that must fit in the ClientHello's extensions (16-bit length).
    assert_eq!(
        PskClient::new(&[b'a'; 63488], &KEY).unwrap_err(),
        ConfigError::Identity { length: 63488 }
    );
    assert!(PskClient::new(&[b'a'; 63487], &KEY).is_ok());
    assert!(PskClient::new(b"a\0b", &KEY).is_ok());
    assert_eq!(
        PskClient::new(IDENTITY, &[]).unwrap_err(),
        ConfigError::Key { length: 0 }
    );
    assert_eq!(
        PskClient::new(IDENTITY, &[1; 513]).unwrap_err(),
        ConfigError::Key { length: 513 }
    );
    assert!(PskClient::new(&[b'a'; 256], &[1; 512]).is_ok());
    let key = *b"secret-key-0123456789abcdef-XYZW";
    let client = PskClient::new(IDENTITY, &key).unwrap();
    let debug = format!("{client:?}");
    assert!(debug.contains("32 bytes, not shown"), "{debug}");
    assert!(
        !debug.contains("secret-key") && !debug.contains("115, 101"),
        "{debug}"
    );
}

#[test]
fn wrong_key_is_named_on_both_sides() {
    let (tcp, server) = pair(|tcp| server().accept(tcp).map(|_| ()).unwrap_err());
    let client_error = PskClient::new(IDENTITY, &[0x11; 32])
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    let server_error = server.join().unwrap();
    assert!(
        matches!(&server_error, HandshakeError::WrongKey { role: Role::Server, identity, .. } if identity.as_bytes() == IDENTITY),
        "{server_error:?}"
    );
    assert!(
        server_error.to_string().contains("different key"),
        "{server_error}"
    );
    assert!(
        matches!(
            client_error,
            HandshakeError::WrongKey {
                role: Role::Client,
                ..
            }
        ),
        "{client_error:?}"
    );
    let message = client_error.to_string();
    assert!(
        message.contains("refused the pre-shared key for identity"),
        "{message}"
    );
    assert!(
        message.contains("the key differs from the server's"),
        "{message}"
    );
}

#[test]
fn unknown_identity_is_named_by_the_server() {
    let (tcp, server) = pair(|tcp| server().accept(tcp).map(|_| ()).unwrap_err());
    let client_error = PskClient::new(b"NVMe0R01 someone else", &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    let server_error = server.join().unwrap();
    assert!(
        matches!(&server_error, HandshakeError::UnknownIdentity { identity } if identity == "NVMe0R01 someone else"),
        "{server_error:?}"
    );
    assert!(server_error.to_string().contains("has no key here"));
    // The client hears a refusal in words, not a dump.
    let message = client_error.to_string();
    assert!(message.starts_with("TLS handshake failed: "), "{message}");
    assert!(!message.contains("Error {"), "{message}");
}

/// A plaintext server: reads the ClientHello, answers `answer` (or nothing) and closes.
fn client_against_plaintext(answer: &'static [u8]) -> HandshakeError {
    let (tcp, server) = pair(move |mut tcp| {
        let mut hello = [0u8; 4096];
        let n = tcp.read(&mut hello).unwrap();
        assert_eq!(hello[0], 22, "a ClientHello arrives first");
        tcp.write_all(answer).unwrap();
        finish(&tcp);
        n
    });
    let error = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    assert!(server.join().unwrap() > 5);
    error
}

#[test]
fn client_to_a_plaintext_nvme_target_says_so() {
    let mut icresp = [0u8; 128];
    icresp[..8].copy_from_slice(&[1, 0, 128, 0, 128, 0, 0, 0]);
    let icresp: &'static [u8] = Box::leak(Box::new(icresp));
    let error = client_against_plaintext(icresp);
    assert!(
        matches!(
            &error,
            HandshakeError::NotTls {
                role: Role::Client,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("an NVMe/TCP ICResp"), "{message}");
    assert!(
        message.contains("speaks plaintext on this port, not TLS"),
        "{message}"
    );
}

#[test]
fn client_to_a_garbage_server_says_not_tls() {
    let error = client_against_plaintext(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let message = error.to_string();
    assert!(
        message.contains("first bytes are not a TLS record (48 54 54 50"),
        "{message}"
    );
}

#[test]
fn client_to_a_server_that_closes_says_it_may_not_speak_tls() {
    let error = client_against_plaintext(b"");
    assert!(
        matches!(
            error,
            HandshakeError::ClosedDuringHandshake {
                role: Role::Client,
                received: 0
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(
        "the peer closed the connection during the TLS handshake: it may not speak TLS on this port"
    ));
}

#[test]
fn server_given_a_plaintext_icreq_says_so() {
    let (mut tcp, server) = pair(|tcp| server().accept(tcp).map(|_| ()).unwrap_err());
    let mut icreq = [0u8; 128];
    icreq[..8].copy_from_slice(&[0, 0, 128, 0, 128, 0, 0, 0]);
    tcp.write_all(&icreq).unwrap();
    finish(&tcp);
    let error = server.join().unwrap();
    assert!(
        matches!(
            &error,
            HandshakeError::NotTls {
                role: Role::Server,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("the client's first bytes are not a TLS record")
    );
    assert!(error.to_string().contains("an NVMe/TCP ICReq"), "{error}");
}

#[test]
fn a_read_timeout_is_named_and_the_session_survives() {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (tcp, server) = pair(move |tcp| {
        let mut tls = server().accept(tcp).unwrap();
        wait.recv().unwrap();
        tls.write_all(b"late").unwrap();
        tls.shutdown().unwrap();
    });
    let mut tls = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap();
    tls.get_ref()
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let error = tls.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(
        matches!(StreamError::of(&error), Some(StreamError::TimedOut)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "timed out waiting for the peer's TLS records"
    );
    go.send(()).unwrap();
    tls.get_ref().set_read_timeout(Some(common::LIMIT)).unwrap();
    let mut late = [0u8; 4];
    tls.read_exact(&mut late).unwrap();
    assert_eq!(&late, b"late");
    server.join().unwrap();
}

#[test]
fn a_handshake_timeout_is_named() {
    let (tcp, server) = pair(|tcp| {
        std::thread::sleep(std::time::Duration::from_millis(400));
        drop(tcp);
    });
    tcp.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let error = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap_err();
    assert!(matches!(error, HandshakeError::TimedOut), "{error:?}");
    assert_eq!(
        error.to_string(),
        "TLS handshake failed: timed out waiting for the peer's handshake messages"
    );
    server.join().unwrap();
}
