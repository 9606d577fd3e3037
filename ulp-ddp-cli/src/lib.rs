//! The `ulp-ddp` command-line tool's parts: the demo (workload runs over the receive engine with
//! the test bed's toy protocol, which exercises header digests, alignment padding, trailing
//! padding covered by the data digest, and control PDUs without being any real protocol), the
//! `nvme` and `iscsi` subcommands, the shared perf mode and its raw TCP baselines, and
//! `perf-compare`. The command line is parsed by [`cli::Cli`] (clap).
#![forbid(unsafe_code)]

/// Prints to standard output like `print!`; a closed pipe (`ulp-ddp ... | head -1`) ends the
/// process quietly instead of panicking ([`out::write_fmt`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to standard output like `println!`; a closed pipe ends the process quietly.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod args;
pub mod cli;
pub mod compare;
pub mod iscsi_cli;
pub mod iscsi_info;
pub mod nvme_cli;
pub mod nvme_info;
pub mod out;
pub mod perf;
pub mod plot;
pub mod progress;
pub mod run;

/// The demonstration protocol (the test bed's toy protocol).
pub use ulp_testbed::toy as demo;
