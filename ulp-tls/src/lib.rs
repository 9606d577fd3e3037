//! TLS 1.3 with an external pre-shared key over any blocking `Read + Write` transport: the
//! secure channel of NVMe/TCP (NVMe TP 8011), on OpenSSL 3 through the [`openssl`] crate.
//!
//! - [`PskClient`] offers one PSK identity and key; [`PskServer`] looks keys up by identity.
//!   Both speak TLS 1.3 only, use `TLS_AES_128_GCM_SHA256` (SHA-256 PSKs) or
//!   `TLS_AES_256_GCM_SHA384` (SHA-384 PSKs), use
//!   the `psk_dhe_ke` key exchange (a fresh (EC)DHE share with the PSK, which Linux's `tlshd`
//!   requires; OpenSSL's default) and no certificates.
//! - [`PskClient::connect`] / [`PskServer::accept`] run the handshake on a stream (in practice a
//!   [`std::net::TcpStream`]; its timeouts, set before or after, bound every step) and give a
//!   [`TlsStream`], which implements [`Read`] and [`Write`].
//! - With the feature `tokio`, `PskClient::connect_async` / `PskServer::accept_async` run
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
//! # PSKs, hashes and limits
//!
//! The PSK reaches OpenSSL through `SSL_CTX_set_psk_use_session_callback` /
//! `SSL_CTX_set_psk_find_session_callback` (a PSK as an `SSL_SESSION` with its own cipher
//! suite), which the `openssl` crate does not bind: the crate's only FFI, in a private module
//! with `// SAFETY:` comments, tested (Miri cannot run it; the tests pass valgrind memcheck
//! with no OpenSSL allocation lost).
//! - A PSK is bound to one hash ([`PskHash`]): SHA-256 ([`PskClient::new`], [`PskServer::new`])
//!   goes with `TLS_AES_128_GCM_SHA256`, SHA-384 ([`PskClient::with_hash`],
//!   [`PskServer::with_hashes`], NVMe's `02` hash, 48-byte keys) with `TLS_AES_256_GCM_SHA384`.
//!   OpenSSL's server picks the suite in the client's order before it looks the PSK up, so a
//!   SHA-384 client offers only its suite.
//! - Identities are 1 to [`MAX_IDENTITY_LEN`] (63487) opaque bytes (they share the
//!   ClientHello's 16-bit extensions length); keys 1 to [`MAX_KEY_LEN`] (512) bytes.
//! - `openssl s_server -psk HEX` is SHA-256 only (it builds a `TLS_AES_128_GCM_SHA256`
//!   session); a SHA-384 PSK goes to it as `-psk_session FILE`, which the tests do.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::OnceLock;

use openssl::ex_data::Index;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef, SslStream,
    SslVerifyMode, SslVersion,
};
use zeroize::Zeroizing;

#[cfg(feature = "tokio")]
mod async_io;
mod error;
mod ffi;
mod wire;

#[cfg(feature = "tokio")]
pub use async_io::AsyncTlsStream;
pub use error::{Alert, ConfigError, HandshakeError, Role, StreamError};
use wire::{Seen, Wire};

/// The longest PSK identity: 63487 bytes. TLS 1.3 gives an identity a 16-bit length (RFC
/// 8446 §4.2.11), but all the ClientHello's extensions share one 16-bit length too; this leaves
/// 2 KiB for the others. (An NVMe/TCP version-1 identity with two 223-byte NQNs is about 520.)
pub const MAX_IDENTITY_LEN: usize = u16::MAX as usize - 2048;
/// The longest key OpenSSL holds in a PSK session (`TLS13_MAX_RESUMPTION_PSK_LENGTH`).
pub const MAX_KEY_LEN: usize = 512;

/// A TLS 1.3 cipher suite this crate offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `TLS_AES_128_GCM_SHA256` (the one NVMe/TCP targets must support).
    Aes128GcmSha256,
    /// `TLS_AES_256_GCM_SHA384` (usable with a SHA-384 PSK).
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

    /// The hash of the suite, which a PSK used with it must be bound to.
    pub fn hash(self) -> PskHash {
        match self {
            Self::Aes128GcmSha256 => PskHash::Sha256,
            Self::Aes256GcmSha384 => PskHash::Sha384,
        }
    }
}

/// The hash a TLS 1.3 external PSK is bound to (RFC 8446 §4.2.11): the PSK is usable only with
/// cipher suites of that hash. NVMe/TCP's identities say which (`NVMe1R01` SHA-256,
/// `NVMe1R02` SHA-384, 32- and 48-byte keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PskHash {
    /// SHA-256: used with `TLS_AES_128_GCM_SHA256`.
    Sha256,
    /// SHA-384: used with `TLS_AES_256_GCM_SHA384`.
    Sha384,
}

impl PskHash {
    /// The suite this crate uses with a PSK of this hash.
    pub fn cipher_suite(self) -> CipherSuite {
        match self {
            Self::Sha256 => CipherSuite::Aes128GcmSha256,
            Self::Sha384 => CipherSuite::Aes256GcmSha384,
        }
    }
}

fn openssl_error(error: openssl::error::ErrorStack) -> ConfigError {
    ConfigError::OpenSsl(error.to_string())
}

/// A TLS 1.3-only, certificate-free context offering `suites`.
fn context(method: SslMethod, suites: &[CipherSuite]) -> Result<SslContextBuilder, ConfigError> {
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
    hash: PskHash,
}

impl PskClient {
    /// A client offering `identity` with `key` as a SHA-256 PSK, and both cipher suites.
    pub fn new(identity: &[u8], key: &[u8]) -> Result<Self, ConfigError> {
        Self::with_cipher_suites(identity, key, &CipherSuite::ALL)
    }

    /// A client offering `identity` with `key` as a PSK bound to `hash`, and the cipher suite
    /// of that hash ([`PskHash::cipher_suite`]) only.
    pub fn with_hash(identity: &[u8], key: &[u8], hash: PskHash) -> Result<Self, ConfigError> {
        Self::build(identity, key, hash, &[hash.cipher_suite()])
    }

    /// A client offering `identity` with `key` as a SHA-256 PSK and only `suites` (which must
    /// include `TLS_AES_128_GCM_SHA256`).
    pub fn with_cipher_suites(
        identity: &[u8],
        key: &[u8],
        suites: &[CipherSuite],
    ) -> Result<Self, ConfigError> {
        Self::build(identity, key, PskHash::Sha256, suites)
    }

    fn build(
        identity: &[u8],
        key: &[u8],
        hash: PskHash,
        suites: &[CipherSuite],
    ) -> Result<Self, ConfigError> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return Err(ConfigError::Identity {
                length: identity.len(),
            });
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(ConfigError::Key { length: key.len() });
        }
        if !suites.iter().any(|s| s.hash() == hash) {
            return Err(ConfigError::NoSha256Suite);
        }
        let mut builder = context(SslMethod::tls_client(), suites)?;
        ffi::set_client_psk(
            &mut builder,
            ffi::ClientPsk {
                identity: identity.to_vec(),
                key: Zeroizing::new(key.to_vec()),
                hash,
            },
        )
        .map_err(openssl_error)?;
        Ok(Self {
            context: builder.build(),
            identity: identity.to_vec(),
            key_len: key.len(),
            hash,
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
            .field("hash", &self.hash)
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
///
/// OpenSSL picks the cipher suite (in the client's order of preference) before it looks the
/// PSK up, and uses a PSK only if its hash matches that suite: a client with a SHA-384 PSK must
/// prefer `TLS_AES_256_GCM_SHA384` ([`PskClient::with_hash`] offers only that one).
pub struct PskServer {
    context: SslContext,
    looked: Index<Ssl, Looked>,
}

impl PskServer {
    /// A server whose `lookup` gives the SHA-256 key for an identity (`None`: unknown
    /// identity), with both cipher suites. The returned key is wiped from memory after use.
    pub fn new<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        Self::with_cipher_suites(lookup, &CipherSuite::ALL)
    }

    /// A server with SHA-256 keys accepting only `suites` (which must include
    /// `TLS_AES_128_GCM_SHA256`).
    pub fn with_cipher_suites<F>(lookup: F, suites: &[CipherSuite]) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        if !suites.contains(&CipherSuite::Aes128GcmSha256) {
            return Err(ConfigError::NoSha256Suite);
        }
        Self::build(
            move |identity| lookup(identity).map(|key| (key, PskHash::Sha256)),
            suites,
        )
    }

    /// A server whose `lookup` gives the key for an identity and the hash it is bound to
    /// (`None`: unknown identity), with both cipher suites. The returned key is wiped from
    /// memory after use.
    pub fn with_hashes<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<(Vec<u8>, PskHash)> + Send + Sync + 'static,
    {
        Self::build(lookup, &CipherSuite::ALL)
    }

    fn build<F>(lookup: F, suites: &[CipherSuite]) -> Result<Self, ConfigError>
    where
        F: Fn(&[u8]) -> Option<(Vec<u8>, PskHash)> + Send + Sync + 'static,
    {
        let looked = looked_index()?;
        let mut builder = context(SslMethod::tls_server(), suites)?;
        let lookup = move |ssl: &mut SslRef, identity: &[u8]| {
            let found = lookup(identity).map(|(key, hash)| (Zeroizing::new(key), hash));
            let found = found.filter(|(key, _)| !key.is_empty() && key.len() <= MAX_KEY_LEN);
            ssl.set_ex_data(
                looked,
                Looked {
                    identity: identity.to_vec(),
                    known: found.is_some(),
                },
            );
            found
        };
        ffi::set_server_lookup(&mut builder, Box::new(lookup)).map_err(openssl_error)?;
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
