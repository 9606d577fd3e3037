//! The TLS 1.3 external-PSK callbacks OpenSSL offers and the `openssl` crate does not bind:
//! `SSL_CTX_set_psk_use_session_callback` (client) and `SSL_CTX_set_psk_find_session_callback`
//! (server). Each gives OpenSSL the PSK as an `SSL_SESSION` carrying the key and the cipher
//! suite (and so the hash) it belongs to, with an identity of any length, unlike the older
//! `psk_client_callback` / `psk_server_callback` (SHA-256 and 256-byte identities only).
//!
//! This is the crate's only `unsafe` code. The rest of the crate sees two safe functions,
//! [`set_client_psk`] and [`set_server_lookup`]; the state they install lives in the
//! `SSL_CTX`'s ex_data (owned and freed by the `openssl` crate's ex_data machinery) and the
//! callbacks reach it through the `SSL` they are called with.
//!
//! Declared here, checked against OpenSSL 3.0's `ssl.h` (openssl-sys 0.9.118 binds none of
//! them): the two setters, `SSL_SESSION_new`, `SSL_SESSION_set1_master_key`,
//! `SSL_SESSION_set_cipher`, `SSL_SESSION_set_protocol_version` and `SSL_CIPHER_find`. The
//! types (`SSL`, `SSL_CTX`, `SSL_SESSION`, `SSL_CIPHER`, `EVP_MD`) come from openssl-sys, and
//! libssl is linked by it.
//!
//! Miri cannot run this module (it calls into C); its memory handling is checked by running the
//! crate's tests under valgrind memcheck (see the commit that added it).

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uchar};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{SslContext, SslContextBuilder, SslRef, SslSession};
use openssl_sys::{EVP_MD, SSL, SSL_CIPHER, SSL_CTX, SSL_SESSION, TLS1_3_VERSION};
use zeroize::Zeroizing;

use crate::PskHash;

/// `SSL_psk_use_session_cb_func`. `size_t` is `usize` on every target Rust and OpenSSL share.
type UseSessionCallback = unsafe extern "C" fn(
    ssl: *mut SSL,
    md: *const EVP_MD,
    id: *mut *const c_uchar,
    idlen: *mut usize,
    sess: *mut *mut SSL_SESSION,
) -> c_int;

/// `SSL_psk_find_session_cb_func`.
type FindSessionCallback = unsafe extern "C" fn(
    ssl: *mut SSL,
    identity: *const c_uchar,
    identity_len: usize,
    sess: *mut *mut SSL_SESSION,
) -> c_int;

unsafe extern "C" {
    fn SSL_CTX_set_psk_use_session_callback(ctx: *mut SSL_CTX, cb: Option<UseSessionCallback>);
    fn SSL_CTX_set_psk_find_session_callback(ctx: *mut SSL_CTX, cb: Option<FindSessionCallback>);
    fn SSL_SESSION_new() -> *mut SSL_SESSION;
    fn SSL_SESSION_set1_master_key(
        sess: *mut SSL_SESSION,
        key: *const c_uchar,
        len: usize,
    ) -> c_int;
    fn SSL_SESSION_set_cipher(sess: *mut SSL_SESSION, cipher: *const SSL_CIPHER) -> c_int;
    fn SSL_SESSION_set_protocol_version(sess: *mut SSL_SESSION, version: c_int) -> c_int;
    fn SSL_CIPHER_find(ssl: *mut SSL, ptr: *const c_uchar) -> *const SSL_CIPHER;
}

/// What a client offers: one identity, its key and the hash the key is bound to.
pub(crate) struct ClientPsk {
    pub(crate) identity: Vec<u8>,
    pub(crate) key: Zeroizing<Vec<u8>>,
    pub(crate) hash: PskHash,
}

/// A server's lookup: the key and hash for an identity, `None` when unknown. It gets the
/// connection too, to record what it saw.
pub(crate) type Lookup =
    dyn Fn(&mut SslRef, &[u8]) -> Option<(Zeroizing<Vec<u8>>, PskHash)> + Send + Sync;

struct ServerLookup(Box<Lookup>);

fn index<T: Send + Sync + 'static>(
    cell: &'static OnceLock<Index<SslContext, T>>,
) -> Result<Index<SslContext, T>, openssl::error::ErrorStack> {
    if let Some(index) = cell.get() {
        return Ok(*index);
    }
    let index = SslContext::new_ex_index()?;
    Ok(*cell.get_or_init(|| index))
}

fn client_index() -> Result<Index<SslContext, ClientPsk>, openssl::error::ErrorStack> {
    static INDEX: OnceLock<Index<SslContext, ClientPsk>> = OnceLock::new();
    index(&INDEX)
}

fn server_index() -> Result<Index<SslContext, ServerLookup>, openssl::error::ErrorStack> {
    static INDEX: OnceLock<Index<SslContext, ServerLookup>> = OnceLock::new();
    index(&INDEX)
}

/// Makes every connection of `builder` offer `psk` (TLS 1.3 only).
pub(crate) fn set_client_psk(
    builder: &mut SslContextBuilder,
    psk: ClientPsk,
) -> Result<(), openssl::error::ErrorStack> {
    builder.set_ex_data(client_index()?, psk);
    // SAFETY: `builder.as_ptr()` is the builder's live SSL_CTX. The callback is a plain
    // function (no captured state to outlive); the state it reads was stored just above in the
    // same SSL_CTX's ex_data, which lives as long as the SSL_CTX, and every SSL holds a
    // reference to its SSL_CTX, so the state outlives every call.
    unsafe { SSL_CTX_set_psk_use_session_callback(builder.as_ptr(), Some(use_session)) };
    Ok(())
}

/// Makes every connection of `builder` look the client's PSK identity up with `lookup`.
pub(crate) fn set_server_lookup(
    builder: &mut SslContextBuilder,
    lookup: Box<Lookup>,
) -> Result<(), openssl::error::ErrorStack> {
    builder.set_ex_data(server_index()?, ServerLookup(lookup));
    // SAFETY: as in `set_client_psk`: a live SSL_CTX, a plain function, and state in the same
    // SSL_CTX's ex_data that outlives every SSL made from it.
    unsafe { SSL_CTX_set_psk_find_session_callback(builder.as_ptr(), Some(find_session)) };
    Ok(())
}

/// The IANA code of the suite `hash` goes with (RFC 8446 §B.4).
fn suite_code(hash: PskHash) -> [u8; 2] {
    match hash {
        PskHash::Sha256 => [0x13, 0x01], // TLS_AES_128_GCM_SHA256
        PskHash::Sha384 => [0x13, 0x02], // TLS_AES_256_GCM_SHA384
    }
}

fn digest_nid(hash: PskHash) -> Nid {
    match hash {
        PskHash::Sha256 => Nid::SHA256,
        PskHash::Sha384 => Nid::SHA384,
    }
}

/// A new TLS 1.3 session holding `key` as its PSK and the cipher suite of `hash`, owned by the
/// returned value (one reference). `None` when OpenSSL refuses (allocation, a key longer than
/// it holds, a suite it does not know).
pub(crate) fn psk_session(ssl: &mut SslRef, key: &[u8], hash: PskHash) -> Option<SslSession> {
    let code = suite_code(hash);
    // SAFETY: `ssl` is a live SSL (a `&mut SslRef`); `code` points to the two bytes
    // SSL_CIPHER_find reads. It returns a pointer into OpenSSL's static cipher table (or NULL),
    // never owned by the caller, valid for the life of the process.
    let cipher = unsafe { SSL_CIPHER_find(ssl.as_ptr(), code.as_ptr()) };
    if cipher.is_null() {
        return None;
    }
    // SAFETY: SSL_SESSION_new returns NULL or a new session with a reference count of one, which
    // `SslSession::from_ptr` takes over (its Drop calls SSL_SESSION_free once).
    let session = unsafe {
        let raw = SSL_SESSION_new();
        if raw.is_null() {
            return None;
        }
        SslSession::from_ptr(raw)
    };
    // SAFETY: `session` is a live session we own; set1_master_key copies `key.len()` bytes from
    // `key` (it keeps no pointer to it) and fails on keys longer than it holds; `cipher` is a
    // static table entry, which set_cipher stores by pointer.
    let ok = unsafe {
        SSL_SESSION_set1_master_key(session.as_ptr(), key.as_ptr(), key.len()) == 1
            && SSL_SESSION_set_cipher(session.as_ptr(), cipher) == 1
            && SSL_SESSION_set_protocol_version(session.as_ptr(), TLS1_3_VERSION) == 1
    };
    ok.then_some(session)
}

/// Gives up our one reference to `session` (OpenSSL frees it; no Drop here).
fn hand_over(session: SslSession) -> *mut SSL_SESSION {
    let session = std::mem::ManuallyDrop::new(session);
    session.as_ptr()
}

/// The client's `SSL_psk_use_session_cb_func`: offers the context's PSK. Called once for the
/// ClientHello (`md` NULL) and again after a HelloRetryRequest with the handshake digest of the
/// suite the server chose (`md`): a PSK bound to another hash is then withheld.
unsafe extern "C" fn use_session(
    ssl: *mut SSL,
    md: *const EVP_MD,
    id: *mut *const c_uchar,
    idlen: *mut usize,
    sess: *mut *mut SSL_SESSION,
) -> c_int {
    // A panic must not unwind into C: it becomes a failed callback (the handshake fails with
    // an internal_error alert).
    let offered = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: OpenSSL calls this with the live SSL being handshaken, which nothing else uses
        // during the call (the `SslStream` driving it is inside `SSL_connect`).
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        let psk = ssl.ssl_context().ex_data(client_index().ok()?)?;
        if !md.is_null() {
            // SAFETY: a non-NULL `md` is the live EVP_MD of the negotiated suite, only read here.
            let md = unsafe { MessageDigest::from_ptr(md) };
            if md.type_() != digest_nid(psk.hash) {
                return Some(None); // this PSK cannot be used with the suite chosen
            }
        }
        // The state lives in the SSL_CTX, not in `ssl`: take what is needed before the
        // mutable use of `ssl`.
        let (identity, identity_len, hash) = (psk.identity.as_ptr(), psk.identity.len(), psk.hash);
        let key = Zeroizing::new(psk.key.to_vec());
        let session = psk_session(ssl, &key, hash)?;
        Some(Some((session, identity, identity_len)))
    }));
    match offered {
        Ok(Some(Some((session, identity, identity_len)))) => {
            // SAFETY: `sess`, `id` and `idlen` are OpenSSL's out-pointers, valid for writes
            // during the call. `hand_over` gives our one reference of the session to OpenSSL,
            // which frees it (SSL_SESSION_free) when done. The identity points into the
            // SSL_CTX's ex_data, alive for as long as the SSL (OpenSSL copies it at once).
            unsafe {
                *sess = hand_over(session);
                *id = identity;
                *idlen = identity_len;
            }
            1
        }
        Ok(Some(None)) => {
            // SAFETY: `sess` is valid for writes; NULL means "no PSK for this suite".
            unsafe { *sess = std::ptr::null_mut() };
            1
        }
        Ok(None) | Err(_) => 0,
    }
}

/// The server's `SSL_psk_find_session_cb_func`: the context's lookup decides the key and hash
/// for the identity the client offered.
unsafe extern "C" fn find_session(
    ssl: *mut SSL,
    identity: *const c_uchar,
    identity_len: usize,
    sess: *mut *mut SSL_SESSION,
) -> c_int {
    let found = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the live SSL being handshaken, used by nothing else during the call.
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        let identity: &[u8] = if identity.is_null() || identity_len == 0 {
            &[]
        } else {
            // SAFETY: OpenSSL passes the identity from the ClientHello it holds: `identity_len`
            // readable bytes at `identity`, unchanged during the call; the slice does not
            // escape it (the lookup gets a borrow).
            unsafe { std::slice::from_raw_parts(identity, identity_len) }
        };
        let index = server_index().ok()?;
        // Call the lookup through a clone of the context reference: the lookup also needs
        // `ssl` mutably (to record what it saw), and the context outlives this call.
        let context = ssl.ssl_context().to_owned();
        let lookup = context.ex_data(index)?;
        let found = (lookup.0)(ssl, identity);
        Some(match found {
            Some((key, hash)) => Some(psk_session(ssl, &key, hash)?),
            None => None,
        })
    }));
    match found {
        Ok(Some(session)) => {
            // SAFETY: `sess` is valid for writes during the call. A session (ours, one
            // reference) goes to OpenSSL, which frees it after taking its copy; NULL says the
            // identity is unknown.
            unsafe { *sess = session.map_or(std::ptr::null_mut(), hand_over) };
            1
        }
        Ok(None) | Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use openssl::ssl::{Ssl, SslMethod, SslVersion};

    use super::*;

    fn ssl() -> Ssl {
        let context = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        Ssl::new(&context.build()).unwrap()
    }

    #[test]
    fn a_psk_session_carries_key_suite_and_version() {
        let mut ssl = ssl();
        for (hash, key_len, digest) in [
            (PskHash::Sha256, 32, Nid::SHA256),
            (PskHash::Sha384, 48, Nid::SHA384),
        ] {
            let key: Vec<u8> = (0..key_len).map(|i| i as u8 ^ 0xa5).collect();
            let session = psk_session(&mut ssl, &key, hash).unwrap();
            let mut held = vec![0u8; session.master_key_len()];
            assert_eq!(session.master_key(&mut held), key_len);
            assert_eq!(held, key);
            assert_eq!(session.protocol_version(), SslVersion::TLS1_3);
            assert_eq!(digest_nid(hash), digest);
        }
    }

    #[test]
    fn keys_longer_than_openssl_holds_are_refused_not_truncated() {
        let mut ssl = ssl();
        assert!(psk_session(&mut ssl, &[7; 512], PskHash::Sha384).is_some());
        assert!(psk_session(&mut ssl, &[7; 513], PskHash::Sha384).is_none());
    }
}

/// OpenSSL's command-line server with a SHA-384 PSK. Its `-psk HEX` option builds a
/// `TLS_AES_128_GCM_SHA256` session (SHA-256 only: with `-ciphersuites TLS_AES_256_GCM_SHA384`
/// the handshake fails), so the SHA-384 PSK goes in as `-psk_session FILE`: a session this
/// module built, converted to PEM by `openssl sess_id`. Skipped (with a message) when the
/// `openssl` binary cannot run, unless ULP_REQUIRE_PEERS=1.
#[cfg(test)]
mod s_server {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use openssl::ssl::{Ssl, SslMethod};

    use super::*;
    use crate::PskClient;

    #[test]
    fn sha384_psk_against_openssl_s_server() {
        let dir = std::env::temp_dir().join(format!("ulp-tls-s-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (der, pem) = (dir.join("psk.der"), dir.join("psk.pem"));
        let key = [0xc3u8; 48];
        let context = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        let mut ssl = Ssl::new(&context.build()).unwrap();
        let session = psk_session(&mut ssl, &key, PskHash::Sha384).unwrap();
        std::fs::write(&der, session.to_der().unwrap()).unwrap();
        let converted = Command::new("openssl")
            .args(["sess_id", "-inform", "DER", "-outform", "PEM", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem)
            .status();
        match converted {
            Ok(status) => assert!(status.success(), "openssl sess_id failed"),
            Err(e) => {
                assert!(
                    std::env::var("ULP_REQUIRE_PEERS").as_deref() != Ok("1"),
                    "the openssl binary cannot run ({e}) and ULP_REQUIRE_PEERS=1"
                );
                eprintln!("skipped: the openssl binary cannot run ({e})");
                return;
            }
        }
        let identity = "NVMe1R02 nqn.host nqn.subsystem";
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-tls1_3", "-nocert"])
            .args(["-naccept", "1", "-ciphersuites", "TLS_AES_256_GCM_SHA384"])
            .args(["-psk_identity", identity, "-psk_session"])
            .arg(&pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("ACCEPT ")
                    .map(|a| a.rsplit(':').next().unwrap().parse().unwrap())
            })
            .expect("s_server printed no ACCEPT line");
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let client = PskClient::with_hash(identity.as_bytes(), &key, PskHash::Sha384).unwrap();
        let result = client.connect(tcp).map(|mut tls| {
            tls.write_all(b"ping over sha384\n").unwrap();
            let suite = tls.cipher_suite();
            let _ = tls.shutdown();
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest);
            suite
        });
        let saw_ping = lines
            .map_while(Result::ok)
            .any(|l| l.contains("ping over sha384"));
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(result.unwrap(), Some("TLS_AES_256_GCM_SHA384"));
        assert!(saw_ping, "s_server printed the client's plaintext");
    }
}
