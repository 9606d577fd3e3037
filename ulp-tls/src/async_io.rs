//! The same handshake and record stream over tokio's `AsyncRead + AsyncWrite` (feature
//! `tokio`), through [`tokio_openssl`]: the session is the same OpenSSL `SslStream`, driven
//! from poll functions, and the same watcher sits under it, so a failed handshake or a broken
//! record stream is told in the same words as on a blocking transport.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use openssl::ssl::{self, Ssl, SslContext};

use crate::error::{self, HandshakeError, Role, StreamError};
use crate::wire::{Seen, Wire};
use crate::{PskClient, PskServer};

type Inner<S> = tokio_openssl::SslStream<Wire<S>>;

/// A fresh session of `context` over `stream`, not yet handshaken.
fn new_stream<S: AsyncRead + AsyncWrite + Unpin>(
    context: &SslContext,
    stream: S,
    role: Role,
) -> Result<Inner<S>, HandshakeError> {
    let failed = |e: openssl::error::ErrorStack| HandshakeError::Tls {
        role,
        reason: e.to_string(),
    };
    let ssl = Ssl::new(context).map_err(failed)?;
    let wire = Wire {
        stream,
        seen: Seen::default(),
    };
    tokio_openssl::SslStream::new(ssl, wire).map_err(failed)
}

impl PskClient {
    /// Runs the handshake as the client on an async `stream` (in practice a
    /// `tokio::net::TcpStream`; bound it with `tokio::time::timeout`). Feature `tokio`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect): the same [`HandshakeError`]s, in the same words.
    pub async fn connect_async<S>(&self, stream: S) -> Result<AsyncTlsStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let role = Role::Client;
        let mut tls = new_stream(&self.context, stream, role)?;
        match Pin::new(&mut tls).connect().await {
            Ok(()) => Ok(AsyncTlsStream::new(tls, role)),
            Err(e) => {
                let identity = Some((self.identity.as_slice(), true));
                Err(error::handshake(role, e, &tls.get_ref().seen, identity))
            }
        }
    }
}

impl PskServer {
    /// Runs the handshake as the server on an async `stream`. Feature `tokio`.
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    pub async fn accept_async<S>(&self, stream: S) -> Result<AsyncTlsStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let role = Role::Server;
        let mut tls = new_stream(&self.context, stream, role)?;
        match Pin::new(&mut tls).accept().await {
            Ok(()) => Ok(AsyncTlsStream::new(tls, role)),
            Err(e) => {
                let looked = tls.ssl().ex_data(self.looked);
                let identity = looked.map(|l| (l.identity.as_slice(), l.known));
                Err(error::handshake(role, e, &tls.get_ref().seen, identity))
            }
        }
    }
}

/// An established TLS 1.3 session over an async transport `S` (feature `tokio`): `AsyncRead`
/// decrypts into the caller's buffer (OpenSSL's `SSL_read` writes the plaintext straight into
/// it), `AsyncWrite` encrypts and sends.
///
/// A read returns no bytes once the peer sent close_notify ([`peer_closed`](Self::peer_closed));
/// a connection that ends without it, and every other failure, is an `io::Error` carrying a
/// [`StreamError`] ([`StreamError::of`]), as [`TlsStream`](crate::TlsStream)'s.
pub struct AsyncTlsStream<S> {
    tls: Inner<S>,
    role: Role,
    peer_closed: bool,
}

impl<S> AsyncTlsStream<S> {
    fn new(tls: Inner<S>, role: Role) -> Self {
        Self {
            tls,
            role,
            peer_closed: false,
        }
    }

    /// The transport (to wait for readability, or read its addresses).
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

    /// Whether the peer has sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Decrypted bytes OpenSSL holds that a read returns without touching the transport: a
    /// caller that waits for the transport to become readable checks this first.
    pub fn pending(&self) -> usize {
        self.tls.ssl().pending()
    }

    fn seen(&self) -> &Seen {
        &self.tls.get_ref().seen
    }
}

/// A failed read or write of the session, classified as the blocking stream's: tokio-openssl
/// hands OpenSSL's error inside the `io::Error` (or the transport's own error).
fn classify(e: io::Error, seen: &Seen) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock || StreamError::of(&e).is_some() {
        return e;
    }
    if e.get_ref().is_some_and(|inner| inner.is::<ssl::Error>()) {
        let inner = e.into_inner().map(|i| i.downcast::<ssl::Error>());
        return match inner {
            Some(Ok(ssl)) => error::stream(*ssl, seen).into(),
            Some(Err(other)) => io::Error::other(other),
            None => io::Error::other("TLS failure"),
        };
    }
    if seen.eof {
        return eof(seen).into();
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return StreamError::TimedOut.into();
    }
    StreamError::Io(e).into()
}

/// The transport ended without close_notify: in a record or between two.
fn eof(seen: &Seen) -> StreamError {
    if seen.mid_record() {
        StreamError::Truncated
    } else {
        StreamError::UnexpectedEof
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for AsyncTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tls).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                // No bytes: close_notify (OpenSSL reads records exactly, so it stops at that
                // alert without reading on to the transport's end), or the transport's end
                // without it.
                if !this.seen().eof {
                    this.peer_closed = true;
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(eof(this.seen()).into()))
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(classify(e, this.seen()))),
            other => other,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AsyncTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tls).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(classify(e, this.seen()))),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the transport's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

impl<S> fmt::Debug for AsyncTlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncTlsStream")
            .field("role", &self.role)
            .field("cipher_suite", &self.cipher_suite())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}
