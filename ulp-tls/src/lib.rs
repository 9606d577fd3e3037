//! TLS 1.3 with an external pre-shared key over any blocking `Read + Write` transport: the
//! secure channel of NVMe/TCP (NVMe TP 8011), on OpenSSL 3 through the [`openssl`] crate.
//!
//! - [`PskClient`] offers one PSK identity and key; [`PskServer`] looks keys up by identity.
//!   Both speak TLS 1.3 only, offer `TLS_AES_128_GCM_SHA256` and `TLS_AES_256_GCM_SHA384`, use
//!   the `psk_dhe_ke` key exchange (a fresh (EC)DHE share with the PSK, which Linux's `tlshd`
//!   requires; OpenSSL's default) and no certificates.
//! - [`PskClient::connect`] / [`PskServer::accept`] run the handshake on a stream (in practice a
//!   [`std::net::TcpStream`]; its timeouts, set before or after, bound every step) and give a
//!   [`TlsStream`], which implements [`Read`] and [`Write`].
//! - With the feature `tokio`, [`PskClient::connect_async`] / [`PskServer::accept_async`] run
//!   the same handshake over tokio's `AsyncRead + AsyncWrite` (through `tokio-openssl`) and give
//!   an `AsyncTlsStream`, whose reads and writes fail with the same [`StreamError`]s.
//! - Errors are in words: [`HandshakeError`] says whether the key was wrong, the identity
//!   unknown, or the peer does not speak TLS at all; [`StreamError`] (inside the `io::Error`s of
//!   `Read` and `Write`) names truncated and oversize records, alerts, close_notify and
//!   truncation. No key is ever printed (`Debug` shows lengths only).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use ulp_tls::{PskClient, PskServer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = [0x42u8; 32];
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let address = listener.local_addr()?;
//! let server = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let server = PskServer::new(move |identity: &[u8]| {
//!         (identity == b"NVMe0R01 host target").then(|| key.to_vec())
//!     })?;
//!     let (tcp, _) = listener.accept()?;
//!     let mut tls = server.accept(tcp)?;
//!     let mut request = [0u8; 5];
//!     tls.read_exact(&mut request)?;
//!     tls.write_all(b"world")?;
//!     tls.shutdown()?;
//!     Ok(())
//! });
//!
//! let client = PskClient::new(b"NVMe0R01 host target", &key)?;
//! let mut tls = client.connect(TcpStream::connect(address)?)?;
//! tls.write_all(b"hello")?;
//! let mut answer = [0u8; 5];
//! tls.read_exact(&mut answer)?; // decrypted into `answer`
//! assert_eq!(&answer, b"world");
//! assert_eq!(tls.cipher_suite(), Some("TLS_AES_128_GCM_SHA256"));
//! server.join().unwrap().map_err(|e| e.to_string())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Where the bytes are copied
//!
//! On receive: the kernel copies the ciphertext into OpenSSL's record buffer (the transport's
//! `read` is called with that buffer); OpenSSL decrypts and authenticates the record in place
//! there (AES-GCM), then `SSL_read` copies the plaintext into the slice given to
//! [`TlsStream::read`]. This crate adds no copy: the NVMe/TCP blocking driver (`ulp-nvme-tcp`,
//! feature `tls`) hands the command's buffer (or a piece of it) as that slice, so the payload
//! goes kernel → record buffer → command buffer. Nothing is measured here yet. On send:
//! `SSL_write` encrypts from the caller's slice
//! into OpenSSL's write buffer, which the transport's `write` sends.
//!
//! # Limits
//!
//! The PSK goes through OpenSSL's `SSL_CTX_set_psk_client_callback` /
//! `SSL_CTX_set_psk_server_callback`, which the `openssl` crate binds safely. Under TLS 1.3
//! OpenSSL ties such a PSK to SHA-256, so:
//! - identities are 1 to 256 bytes without NUL (long NQN pairs can exceed that);
//! - only SHA-256 suites can complete a handshake: `TLS_AES_256_GCM_SHA384` is offered but a
//!   peer choosing it with this PSK fails; a SHA-384 PSK (NVMe's `02` hash) is not supported.
//!
//! Both need `SSL_CTX_set_psk_use_session_callback` / `SSL_CTX_set_psk_find_session_callback`
//! (a PSK as an `SSL_SESSION` with its own cipher), which the `openssl` crate does not bind; this
//! crate has no FFI of its own (no `unsafe`) and leaves them for later.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::OnceLock;

use openssl::ex_data::Index;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode,
    SslVersion,
};
use zeroize::Zeroizing;

#[cfg(feature = "tokio")]
mod async_io;
mod error;
mod wire;

#[cfg(feature = "tokio")]
pub use async_io::AsyncTlsStream;
pub use error::{Alert, ConfigError, HandshakeError, Role, StreamError};
use wire::{Seen, Wire};

/// The longest identity OpenSSL's PSK callbacks carry (`PSK_MAX_IDENTITY_LEN`).
pub const MAX_IDENTITY_LEN: usize = 256;
/// The longest key OpenSSL's PSK callbacks carry (`PSK_MAX_PSK_LEN`).
pub const MAX_KEY_LEN: usize = 512;

/// A TLS 1.3 cipher suite this crate offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `TLS_AES_128_GCM_SHA256` (the one NVMe/TCP targets must support).
    Aes128GcmSha256,
    /// `TLS_AES_256_GCM_SHA384` (needs a SHA-384 PSK; see the crate's limits).
    Aes256GcmSha384,
}

impl CipherSuite {
    /// Both suites, in order of preference.
    pub const ALL: [Self; 2] = [Self::Aes128GcmSha256, Self::Aes256GcmSha384];

    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Self::Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
        }
    }
}

fn openssl_error(error: openssl::error::ErrorStack) -> ConfigError {
    ConfigError::OpenSsl(error.to_string())
}

/// A TLS 1.3-only, certificate-free context offering `suites`.
fn context(method: SslMethod, suites: &[CipherSuite]) -> Result<SslContextBuilder, ConfigError> {
    if !suites.contains(&CipherSuite::Aes128GcmSha256) {
        return Err(ConfigError::NoSha256Suite);
    }
    let mut builder = SslContextBuilder::new(method).map_err(openssl_error)?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(openssl_error)?;
    builder
        .set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(openssl_error)?;
    let names: Vec<&str> = suites.iter().map(|s| s.name()).collect();
    builder
        .set_ciphersuites(&names.join(":"))
        .map_err(openssl_error)?;
    builder.set_verify(SslVerifyMode::NONE);
    // PSK only: no session tickets to issue or resume from.
    builder.set_options(SslOptions::NO_TICKET);
    Ok(builder)
}

/// The client side: one PSK identity and its key.
pub struct PskClient {
    context: SslContext,
    identity: Vec<u8>,
    key_len: usize,
}

impl PskClient {
    /// A client offering `identity` with `key`, and both cipher suites.
    pub fn new(identity: &[u8], key: &[u8]) -> Result<Self, ConfigError> {
        Self::with_cipher_suites(identity, key, &CipherSuite::ALL)
    }

    /// A client offering only `suites` (which must include `TLS_AES_128_GCM_SHA256`).
    pub fn with_cipher_suites(
        identity: &[u8],
        key: &[u8],
        suites: &[CipherSuite],
    ) -> Result<Self, ConfigError> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN || identity.contains(&0) {
            return Err(ConfigError::Identity {
                length: identity.len(),
            });
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(ConfigError::Key { length: key.len() });
        }
        let mut builder = context(SslMethod::tls_client(), suites)?;
        let offered = identity.to_vec();
        let secret = Zeroizing::new(key.to_vec());
        builder.set_psk_client_callback(move |_ssl, _hint, identity_out, key_out| {
            // OpenSSL reads the identity as a C string from a zeroed buffer one byte longer than
            // `identity_out`; the NUL after it is written anyway.
            if offered.len() > identity_out.len() || secret.len() > key_out.len() {
                return Ok(0); // no PSK: the handshake fails (lengths were checked in `new`)
            }
            identity_out[..offered.len()].copy_from_slice(&offered);
            if let Some(nul) = identity_out.get_mut(offered.len()) {
                *nul = 0;
            }
            key_out[..secret.len()].copy_from_slice(&secret);
            Ok(secret.len())
        });
        Ok(Self {
            context: builder.build(),
            identity: identity.to_vec(),
            key_len: key.len(),
        })
    }

    /// Runs the handshake as the client on `stream`.
    pub fn connect<S: Read + Write>(&self, stream: S) -> Result<TlsStream<S>, HandshakeError> {
        let role = Role::Client;
        let mut tls = new_stream(&self.context, stream, role)?;
        match tls.connect() {
            Ok(()) => Ok(TlsStream {
                tls,
                role,
                peer_closed: false,
            }),
            Err(e) => {
                let identity = Some((self.identity.as_slice(), true));
                Err(error::handshake(role, e, &tls.get_ref().seen, identity))
            }
        }
    }
}

impl fmt::Debug for PskClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskClient")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .field("key", &format_args!("<{} bytes, not shown>", self.key_len))
            .finish()
    }
}

/// The identity a server's lookup saw and whether it found a key (kept on each connection).
struct Looked {
    identity: Vec<u8>,
    known: bool,
}

fn looked_index() -> Result<Index<Ssl, Looked>, ConfigError> {
    static INDEX: OnceLock<Index<Ssl, Looked>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index().map_err(openssl_error)?;
    Ok(*INDEX.get_or_init(|| index))
}

/// The server side: keys looked up by the identity the client offers.
pub struct PskServer {
    context: SslContext,
    looked: Index<Ssl, Looked>,
}

impl PskServer {
    /// A server whose `lookup` gives the key for an identity (`None`: unknown identity), with
    /// both cipher suites. The returned key is wiped from memory after use.
    pub fn new<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        Self::with_cipher_suites(lookup, &CipherSuite::ALL)
    }

    /// A server accepting only `suites` (which must include `TLS_AES_128_GCM_SHA256`).
    pub fn with_cipher_suites<F>(lookup: F, suites: &[CipherSuite]) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        let looked = looked_index()?;
        let mut builder = context(SslMethod::tls_server(), suites)?;
        builder.set_psk_server_callback(move |ssl, identity, key_out| {
            let identity = identity.unwrap_or_default();
            let key = lookup(identity).map(Zeroizing::new);
            let key = key.filter(|k| !k.is_empty() && k.len() <= key_out.len());
            ssl.set_ex_data(
                looked,
                Looked {
                    identity: identity.to_vec(),
                    known: key.is_some(),
                },
            );
            Ok(key.map_or(0, |key| {
                key_out[..key.len()].copy_from_slice(&key);
                key.len()
            }))
        });
        Ok(Self {
            context: builder.build(),
            looked,
        })
    }

    /// Runs the handshake as the server on `stream`.
    pub fn accept<S: Read + Write>(&self, stream: S) -> Result<TlsStream<S>, HandshakeError> {
        let mut tls = new_stream(&self.context, stream, Role::Server)?;
        match tls.accept() {
            Ok(()) => Ok(TlsStream {
                tls,
                role: Role::Server,
                peer_closed: false,
            }),
            Err(e) => {
                let looked = tls.ssl().ex_data(self.looked);
                let identity = looked.map(|l| (l.identity.as_slice(), l.known));
                Err(error::handshake(
                    Role::Server,
                    e,
                    &tls.get_ref().seen,
                    identity,
                ))
            }
        }
    }
}

impl fmt::Debug for PskServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskServer").finish_non_exhaustive()
    }
}

/// A fresh session of `context` over `stream`, not yet handshaken.
fn new_stream<S: Read + Write>(
    context: &SslContext,
    stream: S,
    role: Role,
) -> Result<SslStream<Wire<S>>, HandshakeError> {
    let failed = |e: openssl::error::ErrorStack| HandshakeError::Tls {
        role,
        reason: e.to_string(),
    };
    let ssl = Ssl::new(context).map_err(failed)?;
    SslStream::new(
        ssl,
        Wire {
            stream,
            seen: Seen::default(),
        },
    )
    .map_err(failed)
}

/// An established TLS 1.3 session over `S`: [`Read`] gives the peer's plaintext (decrypted
/// straight into the caller's slice), [`Write`] encrypts and sends.
///
/// `read` returns `Ok(0)` once the peer sent close_notify; `read_exact` then fails with
/// [`StreamError::CloseNotify`]. Every other failure is an `io::Error` carrying a
/// [`StreamError`] ([`StreamError::of`]); a [`StreamError::TimedOut`] (the transport's timeout)
/// leaves the session usable.
pub struct TlsStream<S> {
    tls: SslStream<Wire<S>>,
    role: Role,
    peer_closed: bool,
}

impl<S> TlsStream<S> {
    /// The transport (to set timeouts, poll it, or read its addresses).
    pub fn get_ref(&self) -> &S {
        &self.tls.get_ref().stream
    }

    /// The transport, mutably. Reading or writing it directly corrupts the TLS session.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.tls.get_mut().stream
    }

    /// The negotiated cipher suite's IANA name.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.tls.ssl().current_cipher().map(|c| c.name())
    }

    /// Whether the peer has sent close_notify (its side of the session is closed).
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Decrypted bytes OpenSSL holds that a [`read`](Read::read) returns without touching the
    /// transport. A caller that waits for the transport to become readable (poll(2)) checks
    /// this first: those bytes are no longer in the socket, so the wait would not see them.
    pub fn pending(&self) -> usize {
        self.tls.ssl().pending()
    }
}

impl<S: Read + Write> TlsStream<S> {
    /// Sends close_notify (the end of this side's data; the transport stays open for the peer's
    /// answer and is closed when the `TlsStream` is dropped).
    pub fn shutdown(&mut self) -> Result<(), StreamError> {
        match self.tls.shutdown() {
            Ok(_) => Ok(()),
            Err(e) => Err(error::stream(e, &self.tls.get_ref().seen)),
        }
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.tls.ssl_read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.peer_closed = true;
                    return Ok(0);
                }
                // A record that carried no application data (a post-handshake message).
                Err(e) if e.code() == ErrorCode::WANT_READ && e.io_error().is_none() => {}
                Err(e) => return Err(error::stream(e, &self.tls.get_ref().seen).into()),
            }
        }
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read(buf) {
                Ok(0) => return Err(StreamError::CloseNotify { missing: buf.len() }.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.tls.ssl_write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.code() == ErrorCode::WANT_WRITE && e.io_error().is_none() => {}
                Err(e) => return Err(error::stream(e, &self.tls.get_ref().seen).into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.get_mut().flush()
    }
}

impl<S> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("role", &self.role)
            .field("cipher_suite", &self.cipher_suite())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}
