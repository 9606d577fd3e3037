//! Support for the `ulp-ddp` command-line tool and the criterion benches: a demonstration
//! protocol, workload runs over the receive engine, and result tables.
//!
//! The demonstration protocol ([`demo::Toy`]) is the toy framing the core's tests use: it
//! exercises header digests, alignment padding, trailing padding covered by the data digest,
//! and control PDUs, without being any real protocol.
#![forbid(unsafe_code)]

pub mod iscsi_cli;
pub mod nvme_cli;
pub mod perf;
pub mod run;

/// Ends a command whose arguments did not parse: prints `msg` (prefixed by `command`) unless it
/// is empty (a `--help`), then `usage`; exit code 0 for help, 2 for an error.
pub fn usage_exit(command: &str, msg: &str, usage: &str) -> std::process::ExitCode {
    if !msg.is_empty() {
        eprintln!("{command}: {msg}");
    }
    eprint!("{usage}");
    if msg.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(2)
    }
}

/// The demonstration protocol (shared with the core's tests).
#[path = "../../ulp-ddp-core/tests/toy/mod.rs"]
#[allow(missing_docs)]
pub mod demo;
