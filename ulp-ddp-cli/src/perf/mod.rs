//! The `perf` mode shared by `ulp-ddp nvme perf`, `ulp-ddp iscsi perf` and `ulp-ddp tcp perf`:
//! one flag set ([`spec`]), a closed loop keeping `--qd` commands outstanding
//! ([`closed_loop`](mod@closed_loop)), per-command latency in a log-linear histogram ([`histogram`]), a
//! progress bar, one summary, table or `--json` ([`report`]), and the raw TCP baselines
//! ([`tcp`]). It names no protocol: the `nvme` and `iscsi` subcommands plug into it through
//! [`PerfIo`], and `perf-compare` (crate::compare) runs them all.

pub mod closed_loop;
pub mod histogram;
pub mod report;
pub mod spec;
pub mod tcp;

pub use closed_loop::{LoopOutcome, PerfIo, closed_loop, stats_delta, thread_cpu};
pub use histogram::Histogram;
pub use report::{PerfResult, table_header};
pub use spec::{Limit, PerfArgs, PerfSpec};
pub use tcp::{TCP_REQUEST_LEN, TcpArgs, TcpBaseline, tcp_main, tcp_perf};

/// Bytes of the embedded NVMe/TCP namespace in perf runs (larger than this machine's 32 MiB L3,
/// so reads come from memory, as a target's would), and the TCP baseline's source. (The
/// embedded iSCSI target keeps its default 16 MiB LUN.)
pub const EMBEDDED_BYTES: usize = 64 << 20;

/// The end of a `perf` subcommand: a run prints its result, and the exit code says whether the
/// run or any of its commands failed.
pub fn finish<E: std::fmt::Display>(
    command: &str,
    json: bool,
    outcome: Result<PerfResult, E>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    match outcome {
        Ok(r) => {
            r.print(json);
            if r.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::FAILURE
        }
    }
}
