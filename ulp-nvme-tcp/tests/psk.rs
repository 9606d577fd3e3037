//! TLS PSKs (`ulp_nvme_tcp::psk`) against fixed vectors, each with where it came from:
//!
//! - `libnvme test/psk.c` (github.com/linux-nvme/libnvme, commit 03297d8): interchange keys
//!   and version 1 identities, RFC 8446 and compat derivations.
//! - `nvme-cli 2.13` (Debian trixie's nvme-cli 2.13 with libnvme 1.13, which derive the compat
//!   way): identities and TLS PSKs, produced by
//!   `keyctl session - sh -c 'kr=$(keyctl newring t @s); nvme check-tls-key -d KEY
//!   -n nqn.psk-test-host -c nqn.psk-test-subsys -I V -k t -t user -i; keyctl print ...'`
//!   (the inserted key is the TLS PSK, its description the identity).
//! - `openssl`: RFC 8446 TLS PSKs from `openssl kdf -keylen N -kdfopt digest:SHA256
//!   -kdfopt hexkey:RETAINED -kdfopt hexinfo:HKDFLABEL HKDF` (OpenSSL 3.0.19), with the
//!   HkdfLabel built as Linux's nvme_auth_derive_tls_psk and libnvme's derive_tls_key build it;
//!   the same computation gives libnvme's RFC 8446 identities above, which checks the layout.
use ulp_nvme_tcp::psk::{
    ConfiguredPsk, Derivation, IdentityVersion, PskError, PskHash, RetainedPsk, TlsHash,
};

const HOST: &str = "nqn.psk-test-host";
const SUB: &str = "nqn.psk-test-subsys";
/// libnvme test/psk.c's configured PSK (32 bytes; the 48-byte one appends its bytes 16..32).
const K32: &str = "5512dbb6737d0106f65975b773dfb011ffc344bcf442e2dd6d8bc4870b5d5b03";
const K48_TAIL: &str = "ffc344bcf442e2dd6d8bc4870b5d5b03";
// libnvme test/psk.c:
const I00: &str = "NVMeTLSkey-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:";
const I01: &str = "NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:";
const I02: &str =
    "NVMeTLSkey-1:02:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwP/w0S89ELi3W2LxIcLXVsDn8kXZQ==:";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key48() -> Vec<u8> {
    [hex(K32), hex(K48_TAIL)].concat()
}

#[test]
fn interchange_vectors_parse_and_emit() {
    for (text, hash, key) in [
        (I00, PskHash::None, hex(K32)),
        (I01, PskHash::Sha256, hex(K32)),
        (I02, PskHash::Sha384, key48()),
    ] {
        let psk: ConfiguredPsk = text.parse().unwrap();
        assert_eq!((psk.hash(), psk.key()), (hash, &key[..]), "{text}");
        assert_eq!(psk.to_interchange(), text);
        assert_eq!(ConfiguredPsk::new(hash, &key).unwrap(), psk);
    }
    // A key file's trailing newline is accepted.
    assert_eq!(
        ConfiguredPsk::parse(&format!("{I01}\n")).unwrap().key(),
        &hex(K32)[..]
    );
    // 48-byte key with no transform.
    let none48 = ConfiguredPsk::new(PskHash::None, &key48()).unwrap();
    assert_eq!(
        none48.to_interchange().parse::<ConfiguredPsk>().unwrap(),
        none48
    );
}

/// One derivation vector: interchange key, identity version, derivation, expected identity
/// and TLS PSK (hex).
struct Vector {
    key: &'static str,
    version: IdentityVersion,
    derivation: Derivation,
    identity: &'static str,
    tls_psk: &'static str,
}

const VECTORS: &[Vector] = &[
    // nvme-cli 2.13 (compat), command in the file docs with KEY=I00, V=0 / 1.
    Vector {
        key: I00,
        version: IdentityVersion::V0,
        derivation: Derivation::Compat,
        identity: "NVMe0R01 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "e2b16189378b34adba9fec995ab479040cedec0bc7c6b47728ee4d8de6ff52ba",
    },
    Vector {
        key: I00,
        version: IdentityVersion::V1,
        derivation: Derivation::Compat,
        identity: "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys quJVUJjp/BImWR0UQay/MjSfEgyAr6TyBOWybS/B404=",
        tls_psk: "d50f6d3dd79345b6e8217744524df5ac0dc66964ff70cc5fd18e1b9d57ce7fcf",
    },
    // nvme-cli 2.13 (compat) with KEY=I01; the v1 identity is also libnvme's compat vector.
    Vector {
        key: I01,
        version: IdentityVersion::V0,
        derivation: Derivation::Compat,
        identity: "NVMe0R01 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "09fb1983ac6d6d0353e7cae4f23daddd651c367fa347c59d9cf6936f5a83eafb",
    },
    Vector {
        key: I01,
        version: IdentityVersion::V1,
        derivation: Derivation::Compat,
        identity: "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys 66GuqV08TsAGII39teWUfwQwizjv06Jy8jOcX3NAAzM=",
        tls_psk: "b9f5ab2a41ba6e72a23a12066302a2f775fa6c0942c8e0b18ca8ac07edf305e2",
    },
    // nvme-cli 2.13 (compat) with KEY=I02; the v1 identity is also libnvme's compat vector.
    Vector {
        key: I02,
        version: IdentityVersion::V0,
        derivation: Derivation::Compat,
        identity: "NVMe0R02 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "2ee4754186a625b28a3936ef4a40d839c3ad958b2e017562ee07e2501f172ce999dc9c29033ea7ee33f814f192c13f47",
    },
    Vector {
        key: I02,
        version: IdentityVersion::V1,
        derivation: Derivation::Compat,
        identity: "NVMe1R02 nqn.psk-test-host nqn.psk-test-subsys RsKmYJ3nAn1ApjjMloJFbAkLPivONDAX/xW327YBUsn2eGShXSjCZvBaOxscLqmz",
        tls_psk: "fcefe2e2a2e682b1447dcabf1ec268f78f08c63cd075753abcc8bda2c5c34d48d3014aa8d76ad80107e4f5c9f27e2149",
    },
    // RFC 8446: identities of v1 from libnvme test/psk.c (01, 02) and nvme-cli 2.13 (00: no
    // transform, so both derivations give the same digest); TLS PSKs from `openssl kdf`.
    Vector {
        key: I00,
        version: IdentityVersion::V0,
        derivation: Derivation::Rfc8446,
        identity: "NVMe0R01 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "ec85300ba827726bd3bc4fc07f3a34aec5fe7c8ccac05fefc2f021c74e0df9ef",
    },
    Vector {
        key: I00,
        version: IdentityVersion::V1,
        derivation: Derivation::Rfc8446,
        identity: "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys quJVUJjp/BImWR0UQay/MjSfEgyAr6TyBOWybS/B404=",
        tls_psk: "a45d08ee4639c7570729bb3e57e905e466a49a15ece5401af906830c4d3bdb0b",
    },
    Vector {
        key: I01,
        version: IdentityVersion::V0,
        derivation: Derivation::Rfc8446,
        identity: "NVMe0R01 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "05c6503551ad136e6ee32e6eeb3f6d500b69701d84ec71e328f65c7f51566f68",
    },
    Vector {
        key: I01,
        version: IdentityVersion::V1,
        derivation: Derivation::Rfc8446,
        identity: "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys iSbjiStwJ/1TrTvDlt2fjFmzvsytOJelidNnA+X5lEU=",
        tls_psk: "8fc3c0badfd4c0c66fa3ca33aadd0314f85536cc9bc47338b60f3e6e563786ca",
    },
    Vector {
        key: I02,
        version: IdentityVersion::V0,
        derivation: Derivation::Rfc8446,
        identity: "NVMe0R02 nqn.psk-test-host nqn.psk-test-subsys",
        tls_psk: "f42ba63824cdfe421914c582921f85b5b5b7e2d4df084caeedc9be20b212e8bb0fe8a23e9d59a1c8fc6449da4970a78d",
    },
    Vector {
        key: I02,
        version: IdentityVersion::V1,
        derivation: Derivation::Rfc8446,
        identity: "NVMe1R02 nqn.psk-test-host nqn.psk-test-subsys QhW2+Rp6RzHlNtCslyRxMnwJ11tKKhz8JCAQpQ+XUD8f9td1VeH5h53yz2wKJG1a",
        tls_psk: "a2b2f943f479fc682555cec89857c80ed004ce92f32a973d5764155bb7e36b17a85368a0666d250afac9282dda2e62ca",
    },
];

#[test]
fn identity_and_tls_psk_vectors() {
    for v in VECTORS {
        let psk: ConfiguredPsk = v.key.parse().unwrap();
        let tls = psk.derive(HOST, SUB, v.version, v.derivation).unwrap();
        let what = format!("{} {:?} {:?}", v.key, v.version, v.derivation);
        assert_eq!(tls.identity(), v.identity, "{what}");
        assert_eq!(tls.key(), &hex(v.tls_psk)[..], "{what}");
        assert_eq!(tls.hash().key_len(), tls.key().len());
        // The identity alone, from the retained PSK, is the same.
        let retained = psk.retained(HOST, v.derivation).unwrap();
        assert_eq!(retained.identity(HOST, SUB, v.version).unwrap(), v.identity);
    }
}

#[test]
fn retained_psk_vectors() {
    // RFC 8446 retained PSKs (`openssl kdf ... hexinfo:0020 0d "tls13 HostNQN" 11 HOST`).
    let psk: ConfiguredPsk = I01.parse().unwrap();
    let retained = psk.retained(HOST, Derivation::Rfc8446).unwrap();
    assert_eq!(
        retained.key(),
        &hex("073311dec37e219ff3acd43f130130c5bdd443c066e1cc3424e49030234ff7d5")[..]
    );
    assert_eq!(retained.hash(), TlsHash::Sha256);
    let psk: ConfiguredPsk = I02.parse().unwrap();
    let retained = psk.retained(HOST, Derivation::Rfc8446).unwrap();
    assert_eq!(
        retained.key(),
        &hex(
            "73973a1b51a9acdde29a0610ac6a3ef852cf45936cca6830a661d18f68502f1a4c7a8ecb37524e0b1f7087cb4d680ad9"
        )[..]
    );
    assert_eq!(retained.hash(), TlsHash::Sha384);
    // Hash id 00: the configured PSK is the retained PSK; 48 bytes means SHA-384.
    let none48 = ConfiguredPsk::new(PskHash::None, &key48()).unwrap();
    let retained = none48.retained(HOST, Derivation::Rfc8446).unwrap();
    assert_eq!(
        (retained.key(), retained.hash()),
        (&key48()[..], TlsHash::Sha384)
    );
    let tls = retained
        .tls_psk(HOST, SUB, IdentityVersion::V0, Derivation::Rfc8446)
        .unwrap();
    assert_eq!(
        tls.identity(),
        "NVMe0R02 nqn.psk-test-host nqn.psk-test-subsys"
    );
    assert_eq!(RetainedPsk::new(&hex(K32)).unwrap().key(), &hex(K32)[..]);
}

#[test]
fn random_keys_round_trip() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    for i in 0..200 {
        let hash = [PskHash::None, PskHash::Sha256, PskHash::Sha384][i % 3];
        let len = if hash == PskHash::Sha384 || (hash == PskHash::None && i % 2 == 0) {
            48
        } else {
            32
        };
        let key: Vec<u8> = (0..len).map(|_| next()).collect();
        let psk = ConfiguredPsk::new(hash, &key).unwrap();
        let text = psk.to_interchange();
        assert_eq!(text.len(), if len == 32 { 65 } else { 89 });
        assert_eq!(text.parse::<ConfiguredPsk>().unwrap(), psk);
        // Any single changed character of the key field is caught (CRC, base64 or length).
        let pos = 16 + usize::from(next()) % (text.len() - 17 - 2);
        let mut bad = text.clone().into_bytes();
        bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(bad.parse::<ConfiguredPsk>().is_err(), "{bad} accepted");
    }
}

#[test]
fn malformed_interchange_keys_are_named() {
    let mut with_crc = hex(K32);
    with_crc.extend_from_slice(&[0, 0, 0, 0]);
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let cases: Vec<(String, PskError, &str)> = vec![
        (
            "".into(),
            PskError::NotInterchange,
            "must start `NVMeTLSkey-1:`",
        ),
        (
            "DHHC-1:01:abc:".into(),
            PskError::NotInterchange,
            "not a TLS PSK",
        ),
        (
            I01.replace("-1:", "-2:"),
            PskError::Version("2".into()),
            "version `2`",
        ),
        (
            "NVMeTLSkey-1".into(),
            PskError::Layout("no `:` after the version"),
            "after the version",
        ),
        (
            I01.replace(":01:", ":03:"),
            PskError::HashId("03".into()),
            "hash id `03`",
        ),
        (
            I01.replace(":01:", ":1:"),
            PskError::HashId("1".into()),
            "is not 00",
        ),
        (
            "NVMeTLSkey-1:01".into(),
            PskError::Layout("no `:` after the hash id"),
            "hash id",
        ),
        (
            I01.trim_end_matches(':').into(),
            PskError::Layout("no `:` after the key (it must end with `:`)"),
            "end with",
        ),
        (
            "NVMeTLSkey-1:01::".into(),
            PskError::Layout("the key field is empty"),
            "empty",
        ),
        (
            format!("{I01}extra:"),
            PskError::Layout("more fields after the key"),
            "more fields",
        ),
        (
            I01.replace("VRLb", "VR*b"),
            PskError::Base64(Some(2)),
            "position 2 of the key field",
        ),
        (
            I01.replace("VRLb", "VRL"),
            PskError::Base64(None),
            "not valid base64",
        ),
        (
            I01.replace(":01:", ":02:"),
            PskError::KeyLength {
                hash: PskHash::Sha384,
                len: 32,
            },
            "SHA-384) has 48",
        ),
        (
            I02.replace(":02:", ":01:"),
            PskError::KeyLength {
                hash: PskHash::Sha256,
                len: 48,
            },
            "SHA-256) has 32",
        ),
        (
            format!("NVMeTLSkey-1:00:{}:", b64(&[7; 20])),
            PskError::KeyLength {
                hash: PskHash::None,
                len: 16,
            },
            "32 or 48",
        ),
        (
            format!("NVMeTLSkey-1:01:{}:", b64(&[7; 3])),
            PskError::KeyLength {
                hash: PskHash::Sha256,
                len: 0,
            },
            "0 bytes",
        ),
        (
            format!("NVMeTLSkey-1:01:{}:", b64(&with_crc)),
            PskError::Crc,
            "CRC-32 does not match",
        ),
    ];
    for (text, err, words) in cases {
        let got = ConfiguredPsk::parse(&text).unwrap_err();
        assert_eq!(got, err, "{text}");
        let shown = got.to_string();
        assert!(shown.contains(words), "{text}: {shown}");
        // The message never repeats the key field.
        assert!(!shown.contains("VRLbtnN9"), "{shown}");
    }
    // A long version field is not echoed.
    let long = format!("NVMeTLSkey-{}:01:", "9".repeat(40));
    assert_eq!(
        ConfiguredPsk::parse(&long).unwrap_err(),
        PskError::Version("…".into())
    );
    assert_eq!(
        ConfiguredPsk::new(PskHash::Sha256, &[0; 48]).unwrap_err(),
        PskError::KeyLength {
            hash: PskHash::Sha256,
            len: 48
        }
    );
    assert!(RetainedPsk::new(&[0; 31]).is_err());
}

#[test]
fn bad_nqns_and_long_contexts_are_named() {
    let psk: ConfiguredPsk = I01.parse().unwrap();
    let d = Derivation::Rfc8446;
    for (host, sub, which, reason) in [
        ("", SUB, "host", "empty"),
        (HOST, "", "subsystem", "empty"),
        ("nqn.a b", SUB, "host", "space"),
        (HOST, "nqn.x\n", "subsystem", "control"),
    ] {
        let err = psk.derive(host, sub, IdentityVersion::V1, d).unwrap_err();
        assert!(
            matches!(err, PskError::Nqn { which: w, .. } if w == which),
            "{err:?}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
    let long = format!("nqn.{}", "x".repeat(220));
    assert!(
        psk.retained(&long, d)
            .unwrap_err()
            .to_string()
            .contains("223 bytes")
    );
    // Version 0 with two long NQNs: the identity is the HKDF context, over 255 bytes.
    let host = format!("nqn.{}", "h".repeat(150));
    let sub = format!("nqn.{}", "s".repeat(150));
    let err = psk.derive(&host, &sub, IdentityVersion::V0, d).unwrap_err();
    assert_eq!(err, PskError::ContextTooLong(9 + 154 + 1 + 154));
    assert!(err.to_string().contains("255"), "{err}");
    // Version 1's context is only `01 <digest>`: the same NQNs work.
    assert!(psk.derive(&host, &sub, IdentityVersion::V1, d).is_ok());
}

#[test]
fn debug_never_shows_secrets() {
    let psk: ConfiguredPsk = I01.parse().unwrap();
    let tls = psk
        .derive(HOST, SUB, IdentityVersion::V0, Derivation::Rfc8446)
        .unwrap();
    let retained = psk.retained(HOST, Derivation::Rfc8446).unwrap();
    let shown = [
        format!("{psk:?}"),
        format!("{retained:?}"),
        format!("{tls:?}"),
        format!("{tls:#?}"),
    ];
    for s in &shown {
        for secret in [K32, "VRLbtnN9", "073311de", "05c65035", "5512", "[85, 18"] {
            assert!(
                !s.to_lowercase().contains(&secret.to_lowercase()),
                "{s} shows {secret}"
            );
        }
        assert!(s.contains("fingerprint"), "{s}");
    }
    assert!(
        shown[2].contains("NVMe0R01 nqn.psk-test-host"),
        "{}",
        shown[2]
    );
    // Same key, same fingerprint; another key, another one.
    let other = ConfiguredPsk::new(PskHash::Sha256, &[1; 32]).unwrap();
    assert_eq!(
        format!("{psk:?}"),
        format!("{:?}", I01.parse::<ConfiguredPsk>().unwrap())
    );
    assert_ne!(format!("{psk:?}"), format!("{other:?}"));
}
