//! Errors in words: configuration, handshake, and the record stream after it.

use std::fmt;
use std::io;

use openssl::ssl::{self, ErrorCode};

use crate::wire::{MAX_RECORD_BODY, Seen};

/// A TLS alert, by its number (RFC 8446 §6); displayed by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alert(pub u8);

impl Alert {
    /// decrypt_error (51): in a PSK handshake, the PSK binder did not verify (a wrong key).
    pub const DECRYPT_ERROR: Self = Self(51);
    /// bad_record_mac (20): a record failed authentication.
    pub const BAD_RECORD_MAC: Self = Self(20);
    /// handshake_failure (40): no acceptable set of parameters (here: no usable PSK).
    pub const HANDSHAKE_FAILURE: Self = Self(40);
    /// illegal_parameter (47): OpenSSL's answer to a PSK binder that does not verify.
    pub const ILLEGAL_PARAMETER: Self = Self(47);

    /// The alert's name in RFC 8446 (`"alert 255"` style for numbers it does not define).
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            22 => "record_overflow",
            40 => "handshake_failure",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            109 => "missing_extension",
            110 => "unsupported_extension",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => return None,
        })
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "alert {}", self.0),
        }
    }
}

impl fmt::Debug for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alert({self})")
    }
}

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The end that sent the ClientHello ([`PskClient`](crate::PskClient)).
    Client,
    /// The end that answered it ([`PskServer`](crate::PskServer)).
    Server,
}

impl Role {
    fn peer(self) -> &'static str {
        match self {
            Self::Client => "the server",
            Self::Server => "the client",
        }
    }
}

/// A configuration the library cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The PSK identity is empty or longer than [`MAX_IDENTITY_LEN`](crate::MAX_IDENTITY_LEN)
    /// (63487) bytes: it must fit in the ClientHello's extensions, which have a 16-bit length.
    Identity {
        /// Its length.
        length: usize,
    },
    /// The key is empty or longer than OpenSSL's 512-byte maximum.
    Key {
        /// Its length.
        length: usize,
    },
    /// The cipher suites offered contain no SHA-256 suite, while the PSK is a SHA-256 PSK
    /// (usable only with a SHA-256 suite).
    NoSha256Suite,
    /// OpenSSL refused to build the context (its reason).
    OpenSsl(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity { length } => write!(
                f,
                "the PSK identity ({length} bytes) must be 1 to {} bytes (it must fit in the \
                 ClientHello's extensions)",
                crate::MAX_IDENTITY_LEN
            ),
            Self::Key { length } => {
                write!(
                    f,
                    "the pre-shared key ({length} bytes) must be 1 to 512 bytes"
                )
            }
            Self::NoSha256Suite => f.write_str(
                "no SHA-256 cipher suite offered: the PSK is used with SHA-256, so \
                 TLS_AES_128_GCM_SHA256 must be offered (TLS_AES_256_GCM_SHA384 alone needs a \
                 SHA-384 PSK: PskClient::with_hash, PskServer::with_hashes)",
            ),
            Self::OpenSsl(reason) => write!(f, "OpenSSL refused the TLS configuration: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a TLS handshake failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The two ends hold different keys for the identity: the client was told so by the
    /// server's alert (decrypt_error, or illegal_parameter from OpenSSL), the server found the
    /// client's PSK binder wrong.
    WrongKey {
        /// This end.
        role: Role,
        /// The PSK identity (lossy UTF-8).
        identity: String,
        /// The alert the server sent (client side).
        alert: Option<Alert>,
    },
    /// The server has no key for the identity the client offered.
    UnknownIdentity {
        /// The identity (lossy UTF-8).
        identity: String,
    },
    /// The peer ended the handshake with a fatal alert (other than the wrong-key one).
    AlertReceived {
        /// This end.
        role: Role,
        /// The alert.
        alert: Alert,
    },
    /// The peer's first bytes are not a TLS record: it speaks plaintext on this port.
    NotTls {
        /// This end.
        role: Role,
        /// The peer's first bytes (up to 8).
        first_bytes: Vec<u8>,
    },
    /// The peer closed the connection before the handshake completed.
    ClosedDuringHandshake {
        /// This end.
        role: Role,
        /// Bytes received from the peer before it closed (0: it never answered).
        received: u64,
    },
    /// The transport's read or write timeout expired during the handshake.
    TimedOut,
    /// The transport failed.
    Io(io::Error),
    /// Another TLS failure (OpenSSL's reason, in its words).
    Tls {
        /// This end.
        role: Role,
        /// OpenSSL's reason.
        reason: String,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TLS handshake failed: ")?;
        match self {
            Self::WrongKey {
                role: Role::Client,
                identity,
                alert,
            } => {
                write!(
                    f,
                    "the server refused the pre-shared key for identity \"{identity}\""
                )?;
                if let Some(alert) = alert {
                    write!(
                        f,
                        " (alert {alert}, its answer to a PSK binder that does not verify)"
                    )?;
                }
                f.write_str(": the key differs from the server's")
            }
            Self::WrongKey {
                role: _, identity, ..
            } => write!(
                f,
                "the client's PSK binder for identity \"{identity}\" did not verify: the client \
                 holds a different key"
            ),
            Self::UnknownIdentity { identity } => {
                write!(
                    f,
                    "the client offered PSK identity \"{identity}\", which has no key here"
                )
            }
            Self::AlertReceived { role, alert } => {
                write!(
                    f,
                    "{} refused the handshake with alert {alert}",
                    role.peer()
                )?;
                if *alert == Alert::HANDSHAKE_FAILURE && *role == Role::Client {
                    f.write_str(": it may not know the PSK identity, or shares no cipher suite")?;
                }
                Ok(())
            }
            Self::NotTls { role, first_bytes } => {
                write!(f, "{}'s first bytes are not a TLS record (", role.peer())?;
                for (i, b) in first_bytes.iter().enumerate() {
                    write!(f, "{}{b:02x}", if i == 0 { "" } else { " " })?;
                }
                f.write_str(")")?;
                if let Some(what) = looks_like(first_bytes) {
                    write!(f, ", {what}")?;
                }
                f.write_str(": it speaks plaintext on this port, not TLS")
            }
            Self::ClosedDuringHandshake {
                role: Role::Client,
                received: 0,
            } => f.write_str(
                "the peer closed the connection during the TLS handshake: it may not speak TLS on \
                 this port (or it rejected the pre-shared key without an alert)",
            ),
            Self::ClosedDuringHandshake { role, received } => write!(
                f,
                "{} closed the connection during the TLS handshake after {received} bytes of TLS",
                role.peer()
            ),
            Self::TimedOut => f.write_str("timed out waiting for the peer's handshake messages"),
            Self::Io(e) => write!(f, "the connection failed: {e}"),
            Self::Tls { role: _, reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What the first bytes of a plaintext peer look like, when recognisable.
fn looks_like(bytes: &[u8]) -> Option<&'static str> {
    // NVMe/TCP common header: type, flags, hlen = 128 for ICReq (type 0) and ICResp (type 1).
    match bytes {
        [1, _, 128, ..] => Some("an NVMe/TCP ICResp"),
        [0, _, 128, ..] => Some("an NVMe/TCP ICReq"),
        _ => None,
    }
}

/// A failure of the record stream after the handshake. [`TlsStream`](crate::TlsStream)'s
/// `Read` and `Write` return it inside an [`io::Error`]; [`StreamError::of`] takes it out.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection ended in the middle of a TLS record.
    Truncated,
    /// A record header announced a body longer than TLS allows.
    Oversize {
        /// The announced length.
        length: usize,
    },
    /// A record failed authentication (corrupted or forged ciphertext).
    BadRecordMac,
    /// The peer sent a fatal alert.
    AlertReceived {
        /// The alert.
        alert: Alert,
    },
    /// The peer closed the TLS session (close_notify) while more bytes were expected (from
    /// `read_exact`; a plain `read` returns `Ok(0)` at close_notify).
    CloseNotify {
        /// Bytes still expected.
        missing: usize,
    },
    /// The connection ended without close_notify, at a record boundary.
    UnexpectedEof,
    /// The transport's read or write timeout expired (the stream stays usable).
    TimedOut,
    /// The transport failed.
    Io(io::Error),
    /// Another TLS failure (OpenSSL's reason, in its words).
    Tls(String),
}

impl StreamError {
    /// The `StreamError` inside an `io::Error` returned by [`TlsStream`](crate::TlsStream).
    pub fn of(error: &io::Error) -> Option<&Self> {
        error.get_ref().and_then(|e| e.downcast_ref())
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            Self::TimedOut => io::ErrorKind::TimedOut,
            Self::Truncated | Self::UnexpectedEof | Self::CloseNotify { .. } => {
                io::ErrorKind::UnexpectedEof
            }
            Self::Io(e) => e.kind(),
            _ => io::ErrorKind::InvalidData,
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str(
                "the peer closed the connection in the middle of a TLS record (truncated record)",
            ),
            Self::Oversize { length } => write!(
                f,
                "the peer sent a TLS record of {length} bytes, over the maximum of \
                 {MAX_RECORD_BODY} (2^14 + 256)"
            ),
            Self::BadRecordMac => f.write_str(
                "a TLS record from the peer failed authentication (bad_record_mac): corrupted or \
                 forged data",
            ),
            Self::AlertReceived { alert } => write!(f, "the peer sent TLS alert {alert}"),
            Self::CloseNotify { missing } => write!(
                f,
                "the peer closed the TLS session (close_notify) with {missing} more bytes expected"
            ),
            Self::UnexpectedEof => {
                f.write_str("the peer closed the connection without close_notify (truncation)")
            }
            Self::TimedOut => f.write_str("timed out waiting for the peer's TLS records"),
            Self::Io(e) => write!(f, "the connection failed: {e}"),
            Self::Tls(reason) => write!(f, "TLS failure: {reason}"),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StreamError> for io::Error {
    fn from(error: StreamError) -> Self {
        Self::new(error.kind(), error)
    }
}

/// OpenSSL's reason code for "received alert N" is 1000 + N (`SSL_AD_REASON_OFFSET`).
const ALERT_REASON_OFFSET: i32 = 1000;
/// `SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC`.
const REASON_BAD_RECORD_MAC: i32 = 281;
/// `SSL_R_BINDER_DOES_NOT_VERIFY`.
const REASON_BINDER: i32 = 253;

/// The alert the peer sent, if OpenSSL's error stack says one arrived.
fn alert_received(error: &ssl::Error) -> Option<Alert> {
    let stack = error.ssl_error()?;
    stack.errors().iter().find_map(|e| {
        let alert = e.reason_code() - ALERT_REASON_OFFSET;
        u8::try_from(alert).ok().map(Alert)
    })
}

fn has_reason(error: &ssl::Error, reason: i32) -> bool {
    error
        .ssl_error()
        .is_some_and(|s| s.errors().iter().any(|e| e.reason_code() == reason))
}

/// OpenSSL's reasons in its words (`"ssl3_get_record: wrong version number"`).
fn reasons(error: &ssl::Error) -> String {
    match error.ssl_error() {
        Some(stack) if !stack.errors().is_empty() => {
            let words: Vec<String> = stack
                .errors()
                .iter()
                .map(|e| match (e.function(), e.reason()) {
                    (Some(func), Some(reason)) => format!("{func}: {reason}"),
                    (None, Some(reason)) => reason.to_owned(),
                    _ => format!("OpenSSL error {}", e.code()),
                })
                .collect();
            words.join("; ")
        }
        _ => format!("OpenSSL error code {}", error.code().as_raw()),
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Classifies a failed handshake from OpenSSL's error and what the watcher saw on the wire.
pub(crate) fn handshake(
    role: Role,
    error: ssl::Error,
    seen: &Seen,
    identity: Option<(&[u8], bool)>,
) -> HandshakeError {
    let identity_text = identity.map(|(id, _)| String::from_utf8_lossy(id).into_owned());
    if error.io_error().is_some_and(timed_out) {
        return HandshakeError::TimedOut;
    }
    if !seen.head_is_tls() {
        return HandshakeError::NotTls {
            role,
            first_bytes: seen.head().to_vec(),
        };
    }
    if let Some(alert) = alert_received(&error) {
        return match (role, identity_text) {
            (Role::Client, Some(identity))
                if alert == Alert::DECRYPT_ERROR || alert == Alert::ILLEGAL_PARAMETER =>
            {
                HandshakeError::WrongKey {
                    role,
                    identity,
                    alert: Some(alert),
                }
            }
            _ => HandshakeError::AlertReceived { role, alert },
        };
    }
    match (role, identity) {
        (Role::Server, Some((id, false))) => {
            return HandshakeError::UnknownIdentity {
                identity: String::from_utf8_lossy(id).into_owned(),
            };
        }
        (_, Some((id, _))) if has_reason(&error, REASON_BINDER) => {
            return HandshakeError::WrongKey {
                role,
                identity: String::from_utf8_lossy(id).into_owned(),
                alert: None,
            };
        }
        _ => {}
    }
    let reset = error.io_error().is_some_and(|e| {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        matches!(e.kind(), BrokenPipe | ConnectionAborted | ConnectionReset)
    });
    if seen.eof || reset {
        return HandshakeError::ClosedDuringHandshake {
            role,
            received: seen.received,
        };
    }
    match error.into_io_error() {
        Ok(io) => HandshakeError::Io(io),
        Err(error) => HandshakeError::Tls {
            role,
            reason: reasons(&error),
        },
    }
}

/// Classifies a failed read or write after the handshake.
pub(crate) fn stream(error: ssl::Error, seen: &Seen) -> StreamError {
    if error.io_error().is_some_and(timed_out) {
        return StreamError::TimedOut;
    }
    if let Some(length) = seen.oversize {
        return StreamError::Oversize { length };
    }
    if let Some(alert) = alert_received(&error) {
        return StreamError::AlertReceived { alert };
    }
    if has_reason(&error, REASON_BAD_RECORD_MAC) {
        return StreamError::BadRecordMac;
    }
    if seen.eof {
        return if seen.mid_record() {
            StreamError::Truncated
        } else {
            StreamError::UnexpectedEof
        };
    }
    if error.code() == ErrorCode::SYSCALL && error.io_error().is_none() {
        return StreamError::UnexpectedEof;
    }
    match error.into_io_error() {
        Ok(io) => StreamError::Io(io),
        Err(error) => StreamError::Tls(reasons(&error)),
    }
}
