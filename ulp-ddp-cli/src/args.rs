//! Value parsers shared by every subcommand's flags: sizes with suffixes (`4k`, `1M`), seconds,
//! counts with a range, digests per kind; and [`normalize`], which keeps the command lines the
//! hand-written parsers accepted working under clap.

use std::time::Duration;

use clap::ValueEnum;
use ulp_ddp_core::Digests;

/// Parses a size: plain bytes, or a number with a binary suffix `k`, `M`, `G`, `T` (any case,
/// optionally followed by `iB` or `B`): `4096`, `4k`, `128K`, `1M`, `1m`, `1GiB`.
///
/// # Errors
///
/// A message saying what a size looks like.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("{s:?} is not a size (bytes, or a number with k, M, G or T: 4k, 128K, 1M)");
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let suffix = t[digits..].to_ascii_lowercase();
    let shift = match suffix.trim_end_matches("ib").trim_end_matches('b') {
        "" if suffix.is_empty() || suffix == "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size of at least one byte (`--bs`, `--max-len`, `--piece`, `--span`).
///
/// # Errors
///
/// A message for a bad or zero size.
pub fn size(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("0 is out of range: at least 1 byte (e.g. 4k, 128k, 1M)".into()),
        n => usize::try_from(n).map_err(|_| format!("{s:?} is too large")),
    }
}

/// A size that may be zero (`--copy-below`).
///
/// # Errors
///
/// A message for a bad size.
pub fn size_or_zero(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// Seconds (`--io-timeout 2.5`): from 0 to 10,000,000, fractions allowed.
///
/// # Errors
///
/// A message naming the allowed range.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e7).contains(&secs) {
        return Err(format!("{s} is out of range: seconds from 0 to 10000000"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Positive seconds (`--seconds`, the perf run's length).
///
/// # Errors
///
/// A message naming the allowed range.
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e7) {
        return Err(format!(
            "{s} is out of range: more than 0, at most 10000000"
        ));
    }
    Ok(secs)
}

/// Which digests to ask for (`--digests header|data|both|none`; `--digests` alone: both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DigestKind {
    /// No digests.
    None,
    /// Header digests only.
    Header,
    /// Data digests only.
    Data,
    /// Header and data digests.
    Both,
}

impl DigestKind {
    /// The kind as the core's [`Digests`].
    pub fn digests(self) -> Digests {
        Digests {
            header: matches!(self, Self::Header | Self::Both),
            data: matches!(self, Self::Data | Self::Both),
        }
    }
}

/// `--digests [KIND]`, for commands that take it outside the perf flags.
#[derive(clap::Args, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DigestsArg {
    /// Digests to ask for: header, data, both or none (--digests alone: both)
    #[arg(long, value_name = "KIND", num_args = 0..=1, default_missing_value = "both")]
    pub digests: Option<DigestKind>,
}

impl DigestsArg {
    /// The digests asked for (none when absent).
    pub fn get(self) -> Digests {
        digests(self.digests)
    }
}

/// Where `read` puts what it read: `--blocks N` (instead of `--count` commands) and
/// `--out FILE|-`; shared by `nvme read` and `iscsi read`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadTo {
    /// Read this many logical blocks from --lba (in commands of at most --bs bytes) instead of
    /// --count commands
    #[arg(long, visible_alias = "block-count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub blocks: Option<u64>,
    /// Save the data read, in LBA order, to FILE (- for standard output; the messages then go
    /// to standard error)
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

/// What `write` writes: `--in FILE|-` instead of the pattern; shared by `nvme write` and
/// `iscsi write`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteFrom {
    /// Write the contents of FILE (- for standard input) from --lba, in commands of at most
    /// --bs bytes (the last block padded with zeros), instead of --count pattern commands
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<String>,
}

/// The digests of an optional `--digests` flag (absent: none).
pub fn digests(kind: Option<DigestKind>) -> Digests {
    kind.map_or(Digests::NONE, DigestKind::digests)
}

/// How digests are shown in tables: `on` (both), `off`, `header`, `data`.
pub fn digests_word(d: Digests) -> &'static str {
    match (d.header, d.data) {
        (true, true) => "on",
        (false, false) => "off",
        (true, false) => "header",
        (false, true) => "data",
    }
}

/// The subcommand words of each command that takes one, for [`normalize`].
const OPS: &[(&str, &[&str])] = &[
    ("nvme", &["read", "write", "verify", "perf", "discover"]),
    ("iscsi", &["read", "write", "verify", "perf"]),
    ("tcp", &["perf"]),
];

/// Flags that take no value (so the word after one may be a subcommand).
const SWITCHES: &[&str] = &[
    "--digests",
    "--write",
    "--json",
    "--no-progress",
    "--rr",
    "--no-digests",
    "--no-corrupt",
];

/// Rewrites a command line (without the program name) the way the hand-written parsers took
/// it into the form clap parses, leaving new-style lines unchanged:
/// - the subcommand word may come after flags (`nvme --size 4096 verify`, `--commands 8 demo`):
///   it is moved to its place;
/// - `--digests` not followed by a kind (`header`, `data`, `both`, `none`) means both.
pub fn normalize(args: &[String]) -> Vec<String> {
    let mut v: Vec<String> = args.to_vec();
    let ops: Option<&[&str]> = match v.first().map(String::as_str) {
        Some(first) => OPS.iter().find(|(c, _)| *c == first).map(|(_, o)| *o),
        None => None,
    };
    let (base, words): (usize, &[&str]) = match ops {
        Some(o) => (1, o),
        None => (0, &["demo"]),
    };
    if v.get(base).is_none_or(|w| !words.contains(&w.as_str())) {
        let found = (base + 1..v.len()).find(|&i| {
            words.contains(&v[i].as_str())
                && (!v[i - 1].starts_with('-') || SWITCHES.contains(&v[i - 1].as_str()))
        });
        if let Some(i) = found {
            let w = v.remove(i);
            v.insert(base, w);
        }
    }
    let mut out = Vec::with_capacity(v.len());
    let mut it = v.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--digests" {
            let kind = it
                .peek()
                .filter(|n| DigestKind::from_str(n, true).is_ok())
                .is_some();
            if !kind {
                out.push("--digests=both".to_string());
                continue;
            }
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("4096", 4096),
            ("4k", 4096),
            ("4K", 4096),
            ("128K", 131_072),
            ("1M", 1 << 20),
            ("1m", 1 << 20),
            ("1G", 1 << 30),
            ("2KiB", 2048),
            ("3kb", 3072),
            ("7b", 7),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for s in ["", "k", "4x", "4kk", "-1", "1.5M", "99999999999999999999T"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert!(size("0").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn old_command_lines() {
        assert_eq!(
            normalize(&v("nvme --size 4096 verify")),
            v("nvme verify --size 4096")
        );
        assert_eq!(
            normalize(&v("nvme --digests verify")),
            v("nvme verify --digests=both")
        );
        assert_eq!(
            normalize(&v("iscsi write --digests --len 8")),
            v("iscsi write --digests=both --len 8")
        );
        assert_eq!(
            normalize(&v("iscsi write --digests data")),
            v("iscsi write --digests data")
        );
        assert_eq!(normalize(&v("--commands 8 demo")), v("demo --commands 8"));
        assert_eq!(
            normalize(&v("iscsi read --initiator write")),
            v("iscsi read --initiator write")
        );
        assert_eq!(normalize(&v("tcp --bs 4k perf")), v("tcp perf --bs 4k"));
    }

    #[test]
    fn digest_kinds() {
        assert_eq!(digests(None), Digests::NONE);
        assert_eq!(digests(Some(DigestKind::Both)), Digests::BOTH);
        let h = DigestKind::Header.digests();
        assert!(h.header && !h.data);
        assert_eq!(digests_word(DigestKind::Data.digests()), "data");
    }
}
