//! The whole command line, parsed by clap ([`Cli`]); [`crate::args::normalize`] first rewrites
//! the forms the earlier hand-written parsers accepted.

use clap::{Args, Parser, Subcommand};

use crate::run::Spec;

/// `ulp-ddp`: direct data placement for NVMe/TCP and iSCSI, from the command line.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "ulp-ddp",
    version,
    about = "NVMe/TCP and iSCSI initiators with direct data placement: read, write, verify and \
             perf against real or embedded targets, raw TCP baselines, and a tour",
    long_about = None,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    after_help = "With no arguments: the tour (demo, then NVMe/TCP and iSCSI against embedded \
                  targets). Sizes take suffixes: 4k, 128K, 1M, 1G (binary multiples)."
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// `ulp-ddp [demo flags]`: the demo's flags without the word `demo`.
    #[command(flatten)]
    pub demo: DemoArgs,
}

/// The subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum Cmd {
    /// Run a generated read workload through the receive engine (copy and reader paths)
    #[command(args_override_self = true)]
    Demo(DemoArgs),
    /// The NVMe/TCP host: read, write, verify, perf, discover, id-ctrl, list-ns
    Nvme {
        /// The nvme subcommand.
        #[command(subcommand)]
        cmd: crate::nvme_cli::NvmeCmd,
    },
    /// The iSCSI initiator: read, write, verify, perf, discover, report-luns, inquiry, readcap
    Iscsi {
        /// The iscsi subcommand.
        #[command(subcommand)]
        cmd: crate::iscsi_cli::IscsiCmd,
    },
    /// The raw loopback TCP baselines
    Tcp {
        /// The tcp subcommand.
        #[command(subcommand)]
        cmd: crate::perf::tcp::TcpCmd,
    },
    /// tcp, tcp-rr, nvme and iscsi perf back to back on loopback (embedded targets), with
    /// medians and ratios
    #[command(args_override_self = true)]
    PerfCompare(crate::compare::CompareArgs),
}

/// The demo's flags.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Commands in the workload (at least 1)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub commands: u64,
    /// Largest command (4k, 1M ...)
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = crate::args::size)]
    pub max_len: usize,
    /// Largest stream piece on the copy path
    #[arg(long, value_name = "BYTES", default_value = "64k", value_parser = crate::args::size)]
    pub piece: usize,
    /// Header and data digests off (default on)
    #[arg(long)]
    pub no_digests: bool,
    /// Corrupt no PDU (default: some, to show the digest catching them)
    #[arg(long)]
    pub no_corrupt: bool,
    /// Generator seed
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
}

impl DemoArgs {
    /// The workload these flags ask for.
    pub fn spec(&self) -> Spec {
        Spec {
            commands: usize::try_from(self.commands).unwrap_or(usize::MAX),
            max_len: self.max_len,
            digests: !self.no_digests,
            corrupt: !self.no_corrupt,
            max_piece: self.piece,
            seed: self.seed,
        }
    }
}

impl Cli {
    /// Parses `args` (without the program name) after [`normalize`](crate::args::normalize);
    /// `Ok(None)` is the demo with [`Cli::demo`]'s flags (or the tour, for no arguments).
    ///
    /// # Errors
    ///
    /// clap's error (help and version are errors of their kind, printed by `exit`).
    pub fn try_parse_args(args: &[String]) -> Result<Option<Cmd>, clap::Error> {
        Self::try_parse_full(args).map(|c| c.cmd)
    }

    /// As [`try_parse_args`](Self::try_parse_args), returning the whole parse.
    ///
    /// # Errors
    ///
    /// clap's error.
    pub fn try_parse_full(args: &[String]) -> Result<Self, clap::Error> {
        let v = crate::args::normalize(args);
        Self::try_parse_from(std::iter::once("ulp-ddp".to_string()).chain(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
