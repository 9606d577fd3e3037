//! What a perf run does: its flags ([`PerfArgs`], parsed by clap) and the run's spec.

use clap::Args;
use ulp_ddp_core::Digests;

use crate::args::{DigestKind, positive_seconds, size, size_or_zero};

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this long (commands in flight then complete).
    Seconds(f64),
    /// After this many commands.
    Count(u64),
}

/// The shared perf flags.
#[derive(Clone, Debug, PartialEq)]
pub struct PerfSpec {
    /// Bytes per command.
    pub bs: usize,
    /// Queue depth.
    pub qd: usize,
    /// When to stop.
    pub limit: Limit,
    /// Writes instead of reads.
    pub write: bool,
    /// Header and data digests asked for.
    pub digests: Digests,
    /// Small-payload policy of the protocol drivers' readers: payload of reads expecting
    /// fewer bytes than this goes through the receive buffer (0: always in place).
    pub copy_below: u64,
    /// JSON output.
    pub json: bool,
    /// Progress bar allowed.
    pub progress: bool,
}

impl Default for PerfSpec {
    fn default() -> Self {
        Self {
            bs: 128 * 1024,
            qd: 8,
            limit: Limit::Seconds(3.0),
            write: false,
            digests: Digests::NONE,
            copy_below: 0,
            json: false,
            progress: true,
        }
    }
}

/// The flags every perf mode takes (tcp, nvme, iscsi, perf-compare).
#[derive(Args, Clone, Debug, PartialEq)]
#[command(next_help_heading = "Perf flags (the same for tcp, nvme, iscsi and perf-compare)")]
pub struct PerfArgs {
    /// Bytes per command (4k, 128k, 1M ...)
    #[arg(long, visible_aliases = ["size", "len"], value_name = "BYTES", default_value = "128k", value_parser = size)]
    pub bs: usize,
    /// Commands outstanding at once (1 to 1024)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub qd: u16,
    /// Run for S seconds (default 3) ...
    #[arg(long, value_name = "S", value_parser = positive_seconds, overrides_with = "count")]
    pub seconds: Option<f64>,
    /// ... or for N commands (at least 1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), overrides_with = "seconds")]
    pub count: Option<u64>,
    /// Writes instead of reads
    #[arg(long)]
    pub write: bool,
    /// Digests to ask for: header, data, both or none (--digests alone: both)
    #[arg(long, value_name = "KIND", num_args = 0..=1, default_missing_value = "both")]
    pub digests: Option<DigestKind>,
    /// nvme/iscsi: while every outstanding read expects fewer than B bytes, read the socket
    /// through a 64 KiB buffer, many PDUs per read, copying their payload (SPDK's small-I/O
    /// policy); default 0: every payload read in place
    #[arg(long, value_name = "B", default_value = "0", value_parser = size_or_zero)]
    pub copy_below: u64,
    /// One JSON object instead of the table
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is only drawn on a terminal anyway)
    #[arg(long)]
    pub no_progress: bool,
}

impl PerfArgs {
    /// The run these flags ask for.
    pub fn spec(&self) -> PerfSpec {
        PerfSpec {
            bs: self.bs,
            qd: usize::from(self.qd),
            limit: match (self.count, self.seconds) {
                (Some(n), _) => Limit::Count(n),
                (None, Some(s)) => Limit::Seconds(s),
                (None, None) => Limit::Seconds(3.0),
            },
            write: self.write,
            digests: crate::args::digests(self.digests),
            copy_below: self.copy_below,
            json: self.json,
            progress: !self.no_progress,
        }
    }
}

impl PerfSpec {
    /// `read` or `write`.
    pub fn op(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        perf: PerfArgs,
    }

    fn parse(s: &str) -> Result<PerfSpec, String> {
        let v =
            crate::args::normalize(&s.split_whitespace().map(str::to_string).collect::<Vec<_>>());
        T::try_parse_from(std::iter::once("t".to_string()).chain(v))
            .map(|t| t.perf.spec())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags() {
        let s =
            parse("--bs 4096 --qd 2 --count 9 --digests --json --copy-below 8192").expect("parse");
        assert_eq!(s.copy_below, 8192);
        assert_eq!(
            (s.bs, s.qd, s.limit, s.digests, s.json, s.write),
            (4096, 2, Limit::Count(9), Digests::BOTH, true, false)
        );
        assert_eq!(parse("--size 128k").expect("alias").bs, 128 * 1024);
        assert_eq!(parse("--len 1M").expect("alias").bs, 1 << 20);
        assert_eq!(
            parse("--digests header").expect("kind").digests,
            Digests {
                header: true,
                data: false
            }
        );
        assert_eq!(
            parse("--seconds 2 --count 5").expect("last").limit,
            Limit::Count(5)
        );
        assert_eq!(
            parse("--count 5 --seconds 2").expect("last").limit,
            Limit::Seconds(2.0)
        );
        let e = parse("--seconds 0").unwrap_err();
        assert!(e.contains("--seconds"), "{e}");
        assert!(parse("--bs").is_err());
        let e = parse("--qd 0").unwrap_err();
        assert!(e.contains("--qd") && e.contains("1..=1024"), "{e}");
        let e = parse("--bs 0").unwrap_err();
        assert!(e.contains("--bs") && e.contains("at least 1"), "{e}");
        let e = parse("--bs 12x").unwrap_err();
        assert!(e.contains("--bs") && e.contains("not a size"), "{e}");
    }
}
