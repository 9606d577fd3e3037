//! A server that completes the handshake and then misbehaves on the raw socket: truncated and
//! oversize records, an alert in the middle of the data, close_notify or a bare close mid-read.
//! The client names each; nothing panics.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{IDENTITY, KEY, finish, pair, server};
use ulp_tls::{Alert, PskClient, StreamError, TlsStream};

/// The server sends 1000 good bytes, then `misbehave`s; the client reads 2000 (one "PDU").
fn client_reads_past(
    misbehave: impl FnOnce(&mut TlsStream<TcpStream>) + Send + 'static,
) -> std::io::Error {
    let (tcp, server) = pair(move |tcp| {
        let mut tls = server().accept(tcp).unwrap();
        tls.write_all(&[7u8; 1000]).unwrap();
        misbehave(&mut tls);
        finish(tls.get_ref());
    });
    let mut tls = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap();
    let mut pdu = [0u8; 2000];
    let error = tls.read_exact(&mut pdu).unwrap_err();
    assert!(
        pdu[..1000].iter().all(|&b| b == 7),
        "the good bytes arrived first"
    );
    drop(tls);
    server.join().unwrap();
    error
}

#[test]
fn truncated_record_then_close() {
    let error = client_reads_past(|tls| {
        tls.get_mut().write_all(&[23, 3, 3, 0, 100]).unwrap();
        tls.get_mut().write_all(&[0xee; 10]).unwrap();
    });
    assert!(
        matches!(StreamError::of(&error), Some(StreamError::Truncated)),
        "{error:?}"
    );
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(
        error
            .to_string()
            .contains("in the middle of a TLS record (truncated record)")
    );
}

#[test]
fn oversize_record_header() {
    let error = client_reads_past(|tls| {
        tls.get_mut().write_all(&[23, 3, 3, 0x48, 0x00]).unwrap();
        tls.get_mut().write_all(&[0xee; 64]).unwrap();
    });
    assert!(
        matches!(
            StreamError::of(&error),
            Some(StreamError::Oversize { length: 0x4800 })
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("over the maximum of 16640 (2^14 + 256)"),
        "{error}"
    );
}

#[test]
fn close_without_close_notify_is_truncation() {
    let error = client_reads_past(|_| {});
    assert!(
        matches!(StreamError::of(&error), Some(StreamError::UnexpectedEof)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the peer closed the connection without close_notify (truncation)"
    );
}

#[test]
fn close_notify_in_the_middle_of_a_read() {
    let error = client_reads_past(|tls| tls.shutdown().unwrap());
    assert!(
        matches!(
            StreamError::of(&error),
            Some(StreamError::CloseNotify { missing: 1000 })
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("(close_notify) with 1000 more bytes expected")
    );
}

#[test]
fn alert_in_the_middle_of_application_data() {
    // The client forges an application record; the server's OpenSSL rejects it and answers with
    // a bad_record_mac alert, which reaches the client after 1000 good bytes.
    let (tcp, server) = pair(|tcp| {
        let mut tls = server().accept(tcp).unwrap();
        tls.write_all(&[7u8; 1000]).unwrap();
        let error = tls.read(&mut [0u8; 64]).unwrap_err();
        finish(tls.get_ref());
        error
    });
    let mut tls = PskClient::new(IDENTITY, &KEY)
        .unwrap()
        .connect(tcp)
        .unwrap();
    tls.get_mut().write_all(&[23, 3, 3, 0, 32]).unwrap();
    tls.get_mut().write_all(&[0xaa; 32]).unwrap();
    let mut pdu = [0u8; 2000];
    let error = tls.read_exact(&mut pdu).unwrap_err();
    assert!(
        matches!(
            StreamError::of(&error),
            Some(StreamError::AlertReceived {
                alert: Alert::BAD_RECORD_MAC
            })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the peer sent TLS alert bad_record_mac (20)"
    );
    drop(tls);
    let server_error = server.join().unwrap();
    assert!(
        matches!(
            StreamError::of(&server_error),
            Some(StreamError::BadRecordMac)
        ),
        "{server_error:?}"
    );
    assert!(
        server_error
            .to_string()
            .contains("failed authentication (bad_record_mac)")
    );
}
