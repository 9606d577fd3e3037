//! NVMe/TCP TLS pre-shared keys (NVMe TCP Transport, TP 8011 and TP 8018): the configured PSK
//! in the PSK interchange format, the retained PSK derived from it, the PSK identity (version 0
//! and version 1, with the PSK digest) and the TLS PSK a TLS 1.3 handshake uses. Pure
//! computation: no TLS, no I/O.
//!
//! ```
//! use ulp_nvme_tcp::psk::{ConfiguredPsk, Derivation, IdentityVersion};
//!
//! // As `nvme gen-tls-key` prints it (read from a key file; never from the command line):
//! let configured: ConfiguredPsk =
//!     "NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:".parse()?;
//! let tls = configured.derive(
//!     "nqn.psk-test-host",
//!     "nqn.psk-test-subsys",
//!     IdentityVersion::V1,
//!     Derivation::Rfc8446,
//! )?;
//! assert_eq!(
//!     tls.identity(),
//!     "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys \
//!      iSbjiStwJ/1TrTvDlt2fjFmzvsytOJelidNnA+X5lEU="
//! );
//! assert_eq!(tls.key().len(), 32); // offered with TLS_AES_128_GCM_SHA256
//! // Debug shows no secret: only the hash and a fingerprint.
//! assert!(format!("{configured:?}").starts_with("ConfiguredPsk { hash: Sha256, fingerprint:"));
//! # Ok::<(), ulp_nvme_tcp::psk::PskError>(())
//! ```
//!
//! The steps, as the NVMe TCP Transport specification defines them and Linux and libnvme
//! compute them:
//!
//! 1. **Configured PSK**: `NVMeTLSkey-1:HH:<base64(key || CRC-32(key), little-endian)>:`,
//!    where `HH` is `00` (the key is used as the retained PSK as is; 32 or 48 bytes), `01`
//!    (retained PSK derived with SHA-256; 32 bytes) or `02` (SHA-384; 48 bytes).
//! 2. **Retained PSK** = HKDF-Expand-Label(HKDF-Extract(0, configured), "HostNQN", host NQN,
//!    length of the configured PSK), with the hash `HH` names ([`ConfiguredPsk::retained`]).
//! 3. **PSK digest** (version 1 identities) = base64(HMAC(retained, host NQN ␠ subsystem NQN ␠
//!    "NVMe-over-Fabrics")) ([`RetainedPsk::digest`]).
//! 4. **PSK identity**: `NVMe0R0H <hostnqn> <subnqn>` (version 0) or `NVMe1R0H <hostnqn>
//!    <subnqn> <digest>` (version 1), where `0H` is the hash of the cipher suite: `01` SHA-256
//!    (`TLS_AES_128_GCM_SHA256`), `02` SHA-384 (`TLS_AES_256_GCM_SHA384`); for `HH = 00` it
//!    follows the key length ([`RetainedPsk::identity`]).
//! 5. **TLS PSK** = HKDF-Expand-Label(HKDF-Extract(0, retained), "nvme-tls-psk", context, hash
//!    length), where the context is the identity (version 0) or `0H <digest>` (version 1)
//!    ([`RetainedPsk::tls_psk`]).
//!
//! HKDF-Expand-Label is the TLS 1.3 one (RFC 8446 section 7.1: big-endian length,
//! length-prefixed `"tls13 "` label and context): the kernel and libnvme 1.16 / nvme-cli 2.16
//! on. libnvme up to 1.15 (nvme-cli up to 2.15, so Debian trixie's 2.13) wrote the length
//! little-endian and the label and context without their length bytes; nvme-cli keeps that as
//! `--compat`. Keys inserted by those versions only match with [`Derivation::Compat`].
//!
//! Secrets never reach `Debug` (which shows the hash and a fingerprint, the first 4 bytes of
//! the key's SHA-256) and no type here implements `Display`; errors name the field that is
//! wrong, never the key.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256, Sha384};

/// The prefix of the PSK interchange format, with its only version.
const PREFIX: &str = "NVMeTLSkey-1:";
/// The fixed text the PSK digest's HMAC ends with.
const DIGEST_SEED: &str = "NVMe-over-Fabrics";
/// Maximum NQN length in bytes (NVMe Base specification: 223 bytes, UTF-8).
pub const NQN_MAX_LEN: usize = 223;

/// The hash of a configured PSK (`HH` in `NVMeTLSkey-1:HH:`): how the retained PSK is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PskHash {
    /// `00`: no transform, the configured PSK is the retained PSK (32 or 48 bytes).
    None,
    /// `01`: retained PSK derived with HKDF-SHA-256 (32-byte key).
    Sha256,
    /// `02`: retained PSK derived with HKDF-SHA-384 (48-byte key).
    Sha384,
}

impl PskHash {
    /// The two-digit id of the interchange format (`00`, `01`, `02`).
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Sha256 => 1,
            Self::Sha384 => 2,
        }
    }

    /// The hash with this interchange id (0, 1 or 2).
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha384),
            _ => None,
        }
    }

    /// The name as users see it (`none`, `SHA-256`, `SHA-384`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
        }
    }
}

/// The hash of a retained or TLS PSK: the hash of the TLS 1.3 cipher suite it goes with
/// (`0H` in the identity `NVMe<v>R0H`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsHash {
    /// `01`: SHA-256, `TLS_AES_128_GCM_SHA256`, 32-byte keys.
    Sha256,
    /// `02`: SHA-384, `TLS_AES_256_GCM_SHA384`, 48-byte keys.
    Sha384,
}

impl TlsHash {
    /// The id in the identity (`1` or `2`, printed `01` / `02`).
    pub fn id(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha384 => 2,
        }
    }

    /// The output length of the hash, which is also the key length (32 or 48).
    pub fn key_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    /// The TLS 1.3 cipher suite whose hash this is.
    pub fn cipher_suite(self) -> &'static str {
        match self {
            Self::Sha256 => "TLS_AES_128_GCM_SHA256",
            Self::Sha384 => "TLS_AES_256_GCM_SHA384",
        }
    }

    /// The hash for a key of `len` bytes (32: SHA-256, 48: SHA-384).
    fn for_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Self::Sha256),
            48 => Some(Self::Sha384),
            _ => None,
        }
    }
}

/// The PSK identity version (NVMe TCP Transport 3.6.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityVersion {
    /// `NVMe0R0H <hostnqn> <subnqn>` (NVMe TCP 1.0c; what `nvme` uses by default).
    V0,
    /// `NVMe1R0H <hostnqn> <subnqn> <PSK digest>` (NVMe TCP 2.0).
    V1,
}

/// How HKDF-Expand-Label builds its `info` (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Derivation {
    /// RFC 8446 section 7.1, as the specification says: Linux, libnvme 1.16 / nvme-cli 2.16 on.
    #[default]
    Rfc8446,
    /// libnvme up to 1.15 / nvme-cli up to 2.15 (and `--compat` later): length little-endian,
    /// label and context without length bytes.
    Compat,
}

/// What is wrong with a PSK or with the inputs of a derivation. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PskError {
    /// The text does not start with `NVMeTLSkey-`.
    NotInterchange,
    /// The interchange version is not `1` (the version field, when short and printable).
    Version(String),
    /// The hash id is not `00`, `01` or `02` (the field, when short and printable).
    HashId(String),
    /// The fields are not `NVMeTLSkey-1:HH:<base64>:` (what is missing or extra).
    Layout(&'static str),
    /// The key field is not standard base64 (position of the first bad character in the key
    /// field, if known).
    Base64(Option<usize>),
    /// The key has a length its hash does not allow.
    KeyLength {
        /// The hash the key is for.
        hash: PskHash,
        /// The key's length in bytes (without the CRC).
        len: usize,
    },
    /// The CRC-32 after the key does not match the key.
    Crc,
    /// An NQN that cannot go into a PSK identity.
    Nqn {
        /// `host` or `subsystem`.
        which: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The HKDF-Expand-Label context is longer than the 255 bytes it can hold.
    ContextTooLong(usize),
}

impl fmt::Display for PskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInterchange => {
                f.write_str("not a TLS PSK in interchange format (it must start `NVMeTLSkey-1:`)")
            }
            Self::Version(v) => write!(
                f,
                "TLS PSK interchange version `{v}` is not supported (only `NVMeTLSkey-1`)"
            ),
            Self::HashId(h) => write!(
                f,
                "TLS PSK hash id `{h}` is not 00 (none), 01 (SHA-256) or 02 (SHA-384)"
            ),
            Self::Layout(what) => write!(f, "malformed TLS PSK interchange key: {what}"),
            Self::Base64(Some(at)) => write!(
                f,
                "the TLS PSK's key field is not valid base64 (bad character at position {at} of the key field)"
            ),
            Self::Base64(None) => {
                f.write_str("the TLS PSK's key field is not valid base64 (wrong length or padding)")
            }
            Self::KeyLength { hash, len } => match hash {
                PskHash::None => write!(
                    f,
                    "the TLS PSK is {len} bytes; a key with hash id 00 has 32 or 48 bytes"
                ),
                _ => write!(
                    f,
                    "the TLS PSK is {len} bytes; a key with hash id {:02} ({}) has {} bytes",
                    hash.id(),
                    hash.name(),
                    if *hash == PskHash::Sha256 { 32 } else { 48 }
                ),
            },
            Self::Crc => f.write_str(
                "the TLS PSK's CRC-32 does not match its key (the key is mistyped or truncated)",
            ),
            Self::Nqn { which, reason } => {
                write!(
                    f,
                    "the {which} NQN cannot be used in a TLS PSK identity: {reason}"
                )
            }
            Self::ContextTooLong(len) => write!(
                f,
                "the TLS PSK derivation context is {len} bytes, more than the 255 HKDF-Expand-Label \
                 allows (use shorter NQNs)"
            ),
        }
    }
}

impl std::error::Error for PskError {}

/// A field echoed in an error: only when short and printable ASCII (never a key).
fn field(s: &str) -> String {
    if s.len() <= 4 && s.bytes().all(|b| b.is_ascii_graphic()) {
        s.to_string()
    } else {
        "…".to_string()
    }
}

/// The first 4 bytes of the key's SHA-256, in hex: identifies a key without revealing it.
fn fingerprint(key: &[u8]) -> String {
    Sha256::digest(key)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn crc32(data: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC is a 32-bit CRC; crc-fast returns it widened to u64.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32
}

/// A configured PSK (the secret an administrator provisions), with the hash its interchange
/// form names. `Debug` shows the hash and a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfiguredPsk {
    hash: PskHash,
    key: Vec<u8>,
}

impl fmt::Debug for ConfiguredPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredPsk")
            .field("hash", &self.hash)
            .field("fingerprint", &fingerprint(&self.key))
            .finish()
    }
}

impl ConfiguredPsk {
    /// A configured PSK from its bytes: 32 bytes for [`PskHash::Sha256`], 48 for
    /// [`PskHash::Sha384`], either for [`PskHash::None`].
    pub fn new(hash: PskHash, key: &[u8]) -> Result<Self, PskError> {
        let ok = match hash {
            PskHash::None => key.len() == 32 || key.len() == 48,
            PskHash::Sha256 => key.len() == 32,
            PskHash::Sha384 => key.len() == 48,
        };
        if !ok {
            return Err(PskError::KeyLength {
                hash,
                len: key.len(),
            });
        }
        Ok(Self {
            hash,
            key: key.to_vec(),
        })
    }

    /// Parses `NVMeTLSkey-1:HH:<base64>:`, checking every field (prefix, version, hash id,
    /// base64, key length for the hash, CRC-32). Surrounding whitespace (a key file's final
    /// newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, PskError> {
        let text = text.trim_ascii();
        let rest = text
            .strip_prefix("NVMeTLSkey-")
            .ok_or(PskError::NotInterchange)?;
        let (version, rest) = rest
            .split_once(':')
            .ok_or(PskError::Layout("no `:` after the version"))?;
        if version != "1" {
            return Err(PskError::Version(field(version)));
        }
        let (hash_id, rest) = rest
            .split_once(':')
            .ok_or(PskError::Layout("no `:` after the hash id"))?;
        let hash = match hash_id {
            "00" => PskHash::None,
            "01" => PskHash::Sha256,
            "02" => PskHash::Sha384,
            other => return Err(PskError::HashId(field(other))),
        };
        let encoded = rest.strip_suffix(':').ok_or(PskError::Layout(
            "no `:` after the key (it must end with `:`)",
        ))?;
        if encoded.is_empty() {
            return Err(PskError::Layout("the key field is empty"));
        }
        if encoded.contains(':') {
            return Err(PskError::Layout("more fields after the key"));
        }
        let raw = BASE64.decode(encoded).map_err(|e| {
            PskError::Base64(match e {
                base64::DecodeError::InvalidByte(at, _)
                | base64::DecodeError::InvalidLastSymbol(at, _) => Some(at),
                base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => None,
            })
        })?;
        let len = raw.len().saturating_sub(4);
        let psk = Self::new(hash, &raw[..len]).map_err(|_| PskError::KeyLength { hash, len })?;
        let crc = u32::from_le_bytes([raw[len], raw[len + 1], raw[len + 2], raw[len + 3]]);
        if crc != crc32(&psk.key) {
            return Err(PskError::Crc);
        }
        Ok(psk)
    }

    /// The interchange form, `NVMeTLSkey-1:HH:<base64(key || CRC-32)>:`, as `nvme gen-tls-key`
    /// prints it. It is the secret: write it to a key file, never to a log.
    pub fn to_interchange(&self) -> String {
        let mut raw = self.key.clone();
        raw.extend_from_slice(&crc32(&self.key).to_le_bytes());
        format!("{PREFIX}{:02}:{}:", self.hash.id(), BASE64.encode(&raw))
    }

    /// The hash named by the interchange form.
    pub fn hash(&self) -> PskHash {
        self.hash
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The retained PSK for the host `hostnqn`: the key itself for [`PskHash::None`], else
    /// HKDF-Extract then HKDF-Expand-Label(`"HostNQN"`, host NQN) with the key's hash.
    pub fn retained(&self, hostnqn: &str, derivation: Derivation) -> Result<RetainedPsk, PskError> {
        check_nqn("host", hostnqn)?;
        let key = match self.hash {
            PskHash::None => self.key.clone(),
            PskHash::Sha256 => expand_label(
                TlsHash::Sha256,
                &self.key,
                "HostNQN",
                hostnqn.as_bytes(),
                derivation,
            )?,
            PskHash::Sha384 => expand_label(
                TlsHash::Sha384,
                &self.key,
                "HostNQN",
                hostnqn.as_bytes(),
                derivation,
            )?,
        };
        RetainedPsk::new(&key)
    }

    /// The whole chain: retained PSK for `hostnqn`, then the identity and TLS PSK for the
    /// subsystem `subnqn`.
    pub fn derive(
        &self,
        hostnqn: &str,
        subnqn: &str,
        version: IdentityVersion,
        derivation: Derivation,
    ) -> Result<TlsPsk, PskError> {
        self.retained(hostnqn, derivation)?
            .tls_psk(hostnqn, subnqn, version, derivation)
    }
}

impl FromStr for ConfiguredPsk {
    type Err = PskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A retained PSK (what an NVMe/TCP entity stores for repeated use with one host), 32 bytes
/// (SHA-256) or 48 (SHA-384). `Debug` shows the hash and a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct RetainedPsk {
    hash: TlsHash,
    key: Vec<u8>,
}

impl fmt::Debug for RetainedPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedPsk")
            .field("hash", &self.hash)
            .field("fingerprint", &fingerprint(&self.key))
            .finish()
    }
}

impl RetainedPsk {
    /// A retained PSK from its bytes; the hash follows the length (32: SHA-256, 48: SHA-384).
    pub fn new(key: &[u8]) -> Result<Self, PskError> {
        let hash = TlsHash::for_len(key.len()).ok_or(PskError::KeyLength {
            hash: PskHash::None,
            len: key.len(),
        })?;
        Ok(Self {
            hash,
            key: key.to_vec(),
        })
    }

    /// The hash of the cipher suite this key goes with.
    pub fn hash(&self) -> TlsHash {
        self.hash
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The PSK digest of a version 1 identity: base64(HMAC(retained, `hostnqn subnqn
    /// NVMe-over-Fabrics`)).
    pub fn digest(&self, hostnqn: &str, subnqn: &str) -> Result<String, PskError> {
        check_nqn("host", hostnqn)?;
        check_nqn("subsystem", subnqn)?;
        let parts = [
            hostnqn.as_bytes(),
            b" ",
            subnqn.as_bytes(),
            b" ",
            DIGEST_SEED.as_bytes(),
        ];
        Ok(BASE64.encode(hmac(self.hash, &self.key, &parts)))
    }

    /// The PSK identity: `NVMe0R0H <hostnqn> <subnqn>` or `NVMe1R0H <hostnqn> <subnqn>
    /// <digest>`.
    pub fn identity(
        &self,
        hostnqn: &str,
        subnqn: &str,
        version: IdentityVersion,
    ) -> Result<String, PskError> {
        Ok(self.identity_and_context(hostnqn, subnqn, version)?.0)
    }

    /// The identity and the HKDF context of the TLS PSK (the identity for version 0,
    /// `0H <digest>` for version 1).
    fn identity_and_context(
        &self,
        hostnqn: &str,
        subnqn: &str,
        version: IdentityVersion,
    ) -> Result<(String, String), PskError> {
        check_nqn("host", hostnqn)?;
        check_nqn("subsystem", subnqn)?;
        let h = self.hash.id();
        Ok(match version {
            IdentityVersion::V0 => {
                let identity = format!("NVMe0R{h:02} {hostnqn} {subnqn}");
                (identity.clone(), identity)
            }
            IdentityVersion::V1 => {
                let digest = self.digest(hostnqn, subnqn)?;
                (
                    format!("NVMe1R{h:02} {hostnqn} {subnqn} {digest}"),
                    format!("{h:02} {digest}"),
                )
            }
        })
    }

    /// The identity and the TLS PSK to offer in the handshake, with the retained PSK's hash:
    /// HKDF-Extract then HKDF-Expand-Label(`"nvme-tls-psk"`, context, hash length).
    pub fn tls_psk(
        &self,
        hostnqn: &str,
        subnqn: &str,
        version: IdentityVersion,
        derivation: Derivation,
    ) -> Result<TlsPsk, PskError> {
        let (identity, context) = self.identity_and_context(hostnqn, subnqn, version)?;
        let key = expand_label(
            self.hash,
            &self.key,
            "nvme-tls-psk",
            context.as_bytes(),
            derivation,
        )?;
        Ok(TlsPsk {
            identity,
            hash: self.hash,
            key,
        })
    }
}

/// The TLS PSK and its identity: what the TLS 1.3 handshake offers (the key with the cipher
/// suite of [`TlsPsk::hash`]). `Debug` shows the identity, hash and a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPsk {
    identity: String,
    hash: TlsHash,
    key: Vec<u8>,
}

impl fmt::Debug for TlsPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPsk")
            .field("identity", &self.identity)
            .field("hash", &self.hash)
            .field("fingerprint", &fingerprint(&self.key))
            .finish()
    }
}

impl TlsPsk {
    /// A TLS PSK given as is: `identity` and the key the handshake offers (32 bytes: SHA-256,
    /// 48: SHA-384), e.g. a key a target's keyring holds under a version-0 identity
    /// `NVMe0R01 <hostnqn> <subnqn>`, as Linux's `nvmet` uses it without derivation.
    ///
    /// # Errors
    ///
    /// A key of another length.
    pub fn new(identity: &str, key: &[u8]) -> Result<Self, PskError> {
        let hash = TlsHash::for_len(key.len()).ok_or(PskError::KeyLength {
            hash: PskHash::None,
            len: key.len(),
        })?;
        Ok(Self {
            identity: identity.to_string(),
            hash,
            key: key.to_vec(),
        })
    }

    /// The PSK identity (`NVMe0R01 …` / `NVMe1R01 … <digest>`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The hash of the cipher suite to offer with this key.
    pub fn hash(&self) -> TlsHash {
        self.hash
    }

    /// The key bytes (32 or 48).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

fn check_nqn(which: &'static str, nqn: &str) -> Result<(), PskError> {
    let reason = if nqn.is_empty() {
        "it is empty"
    } else if nqn.len() > NQN_MAX_LEN {
        "it is longer than 223 bytes"
    } else if nqn.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains a space or a control character"
    } else {
        return Ok(());
    };
    Err(PskError::Nqn { which, reason })
}

/// HMAC over the concatenation of `parts`.
fn hmac(hash: TlsHash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match hash {
        TlsHash::Sha256 => run::<Hmac<Sha256>>(key, parts),
        TlsHash::Sha384 => run::<Hmac<Sha384>>(key, parts),
    }
}

/// HKDF-Extract(0, `secret`) then HKDF-Expand-Label(PRK, `label`, `context`, len(`secret`)),
/// with the `info` layout of `derivation`.
fn expand_label(
    hash: TlsHash,
    secret: &[u8],
    label: &str,
    context: &[u8],
    derivation: Derivation,
) -> Result<Vec<u8>, PskError> {
    let len = secret.len();
    let full_label = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full_label.len() + context.len());
    match derivation {
        Derivation::Rfc8446 => {
            let context_len =
                u8::try_from(context.len()).map_err(|_| PskError::ContextTooLong(context.len()))?;
            info.extend_from_slice(&(len as u16).to_be_bytes());
            info.push(full_label.len() as u8);
            info.extend_from_slice(full_label.as_bytes());
            info.push(context_len);
        }
        Derivation::Compat => {
            info.extend_from_slice(&(len as u16).to_le_bytes());
            info.extend_from_slice(full_label.as_bytes());
        }
    }
    info.extend_from_slice(context);
    let mut okm = vec![0; len];
    let expanded = match hash {
        TlsHash::Sha256 => Hkdf::<Sha256>::new(None, secret).expand(&info, &mut okm),
        TlsHash::Sha384 => Hkdf::<Sha384>::new(None, secret).expand(&info, &mut okm),
    };
    expanded.expect("the output is one hash long, far below HKDF's limit");
    Ok(okm)
}
