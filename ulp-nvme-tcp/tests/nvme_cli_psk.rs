//! TLS PSKs against the installed nvme-cli: for random keys and NQNs, `nvme gen-tls-key`
//! must print our interchange key, `nvme check-tls-key` must accept it (and reject a tampered
//! one, as we do) and, where nvme-cli has `--identity` (2.5 on), print our version 0 and
//! version 1 identities: with the compat derivation before `--compat` existed (nvme-cli up to
//! 2.15, e.g. Debian trixie's 2.13), with both derivations after.
//!
//! `ULP_NVME_CLI` names the binary (default `nvme`; a wrapper script works, e.g. one running a
//! newer nvme-cli with its own loader). If it is missing the test prints why and passes,
//! unless `ULP_REQUIRE_PEERS=1`, when it fails.
use std::process::Command;

use ulp_nvme_tcp::psk::{ConfiguredPsk, Derivation, IdentityVersion, PskHash};

fn run(cli: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cli)
        .args(args)
        .output()
        .map_err(|e| format!("{cli}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{cli} {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[test]
fn nvme_cli_agrees() {
    let cli = std::env::var("ULP_NVME_CLI").unwrap_or_else(|_| "nvme".into());
    let version = match run(&cli, &["version"]) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("nvme-cli not usable ({e}); install nvme-cli or set ULP_NVME_CLI");
            assert!(
                std::env::var("ULP_REQUIRE_PEERS").as_deref() != Ok("1"),
                "{msg}"
            );
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let help = run(&cli, &["check-tls-key", "--help"]).unwrap_or_else(|e| e);
    let keydata = if help.contains("--keydata") {
        "--keydata"
    } else {
        "--key"
    };
    let identities = help.contains("--identity");
    let has_compat = help.contains("--compat");
    eprintln!(
        "{}: identities {identities}, --compat {has_compat}",
        version.trim()
    );

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed:#x}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut compared = 0;
    for i in 0..6 {
        let hash = if i % 2 == 0 {
            PskHash::Sha256
        } else {
            PskHash::Sha384
        };
        let len = if hash == PskHash::Sha256 { 32 } else { 48 };
        let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let secret: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let ours = ConfiguredPsk::new(hash, &key).unwrap();
        let hash_arg = hash.id().to_string();

        let ours = match run(
            &cli,
            &["gen-tls-key", "--secret", &secret, "--hmac", &hash_arg],
        ) {
            Ok(theirs) => {
                let theirs = last_line(&theirs);
                let what = format!("nvme gen-tls-key -s <key> -m {hash_arg}");
                assert_eq!(theirs, ours.to_interchange(), "{what}");
                assert_eq!(theirs.parse::<ConfiguredPsk>().unwrap(), ours);
                ours
            }
            // nvme-cli 2.3 (Debian bookworm) refuses every --secret longer than 16 bytes (it
            // compares the hex index with the key length): check its random keys instead.
            Err(e) if e.contains("Skipping excess secret bytes") => {
                let theirs = run(&cli, &["gen-tls-key", "--hmac", &hash_arg]).unwrap();
                let theirs = last_line(&theirs);
                let parsed: ConfiguredPsk = theirs.parse().unwrap();
                assert_eq!((parsed.hash(), parsed.key().len()), (hash, len), "{theirs}");
                assert_eq!(parsed.to_interchange(), theirs);
                parsed
            }
            Err(e) => panic!("{e}"),
        };
        // nvme-cli with identities wants the NQNs even to check a key.
        let host = format!("nqn.2014-08.org.nvmexpress:uuid:{:016x}", next());
        let sub = format!("nqn.2024-01.io.ulp-ddp:s{:x}", next() % 100_000);
        let nqns: &[&str] = if identities {
            &["-n", &host, "-c", &sub]
        } else {
            &[]
        };
        let check = |key: &str| run(&cli, &[&["check-tls-key", keydata, key][..], nqns].concat());

        let text = ours.to_interchange();
        check(&text).unwrap();
        // A changed character in the key field: both refuse it.
        let mut bad = text.clone().into_bytes();
        let at = 16 + (next() as usize) % 40;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        let refused = check(&bad);
        assert!(
            refused.is_err() || !refused.unwrap().contains("valid"),
            "nvme accepted {bad}"
        );
        assert!(bad.parse::<ConfiguredPsk>().is_err());
        compared += 1;

        if !identities {
            continue;
        }
        for (version, v) in [(IdentityVersion::V0, "0"), (IdentityVersion::V1, "1")] {
            let derivations: &[(Derivation, bool)] = if has_compat {
                &[(Derivation::Rfc8446, false), (Derivation::Compat, true)]
            } else {
                &[(Derivation::Compat, false)]
            };
            for &(derivation, flag) in derivations {
                let mut args = vec![
                    "check-tls-key",
                    keydata,
                    &text,
                    "-n",
                    &host,
                    "-c",
                    &sub,
                    "-I",
                    v,
                ];
                if flag {
                    args.push("--compat");
                }
                let theirs = run(&cli, &args).unwrap();
                let mine = ours.derive(&host, &sub, version, derivation).unwrap();
                assert_eq!(
                    last_line(&theirs),
                    mine.identity(),
                    "nvme {args:?} ({derivation:?})"
                );
                compared += 1;
            }
        }
    }
    eprintln!("compared {compared} values with {cli}");
    assert!(compared >= 6);
}
