//! The `ulp-ddp` command-line tool's parts: the demo (workload runs over the receive engine with
//! the test bed's toy protocol, which exercises header digests, alignment padding, trailing
//! padding covered by the data digest, and control PDUs without being any real protocol), the
//! `nvme` and `iscsi` subcommands, the shared perf mode and its raw TCP baselines, and
//! `perf-compare`.
#![forbid(unsafe_code)]

pub mod compare;
pub mod iscsi_cli;
pub mod iscsi_info;
pub mod nvme_cli;
pub mod nvme_info;
pub mod perf;
pub mod plot;
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

/// The demonstration protocol (the test bed's toy protocol).
pub use ulp_testbed::toy as demo;

/// The value of a flag given in seconds (`--io-timeout 2.5`): the next argument, from 0 to
/// 10,000,000 s; the error names the flag and the value.
pub fn seconds_arg<'a>(
    arg: &str,
    it: &mut impl Iterator<Item = &'a String>,
) -> Result<std::time::Duration, String> {
    let v = it.next().ok_or_else(|| format!("{arg} needs seconds"))?;
    let secs: f64 = v.parse().map_err(|e| format!("{arg} {v:?}: {e}"))?;
    if !(0.0..=1e7).contains(&secs) {
        return Err(format!("{arg} {v}: seconds from 0 to 10000000"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
