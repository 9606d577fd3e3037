//! `ulp-ddp`: the project's command-line tool.
//!
//! With no arguments it runs its embedded default, a short tour that needs nothing installed:
//!
//! 1. `demo`: a generated stream of read PDUs (a demonstration framing, digests on, some data
//!    corrupted on purpose) through the receive engine and the software backend, by the copy
//!    path and by the reader path over loopback TCP: what was placed, copied, read in place and
//!    verified;
//! 2. `nvme verify --digests`: writes and reads back through the NVMe/TCP host against the
//!    embedded NVMe/TCP target over loopback TCP, header and data digests on;
//! 3. `iscsi write --digests`: the same through the iSCSI initiator against the embedded iSCSI
//!    target.

use std::process::ExitCode;

use ulp_ddp_cli::cli::{Cli, Cmd, DemoArgs};
use ulp_ddp_cli::run::{self, Report};
use ulp_ddp_cli::{outln, run::Spec};

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn print(reports: &[Report]) {
    outln!(
        "{:<7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>9}",
        "path",
        "stream MB",
        "PDUs",
        "placed MB",
        "copied MB",
        "in-place",
        "digests",
        "computed",
        "failed",
        "verified",
        "GB/s"
    );
    for r in reports {
        let s = r.stats;
        let gbps = r.stream_bytes as f64 / r.elapsed.as_secs_f64().max(1e-9) / 1e9;
        outln!(
            "{:<7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>9.2}",
            r.path,
            mb(r.stream_bytes as u64),
            r.pdus,
            mb(s.bytes_placed),
            mb(s.bytes_copied),
            mb(s.bytes_read_in_place),
            s.digests_offloaded + s.digests_computed,
            s.digests_computed,
            s.digests_failed,
            if r.verified { "yes" } else { "NO" },
            gbps
        );
    }
}

/// The default job: the engine demo, then both protocols end to end against embedded targets.
fn tour() -> ExitCode {
    outln!("== 1/3 receive engine demo (ulp-ddp demo)");
    let demo = dispatch(&strings(&["demo"]));
    outln!("\n== 2/3 NVMe/TCP host vs the embedded target (ulp-ddp nvme verify --digests)");
    let nvme = dispatch(&strings(&["nvme", "verify", "--digests", "--count", "32"]));
    outln!("\n== 3/3 iSCSI initiator vs the embedded target (ulp-ddp iscsi write --digests)");
    let iscsi = dispatch(&strings(&["iscsi", "write", "--digests", "--bs", "1M"]));
    let ok = [demo, nvme, iscsi].iter().all(|c| *c == ExitCode::SUCCESS);
    outln!(
        "\n{}",
        if ok {
            "tour: all three passed"
        } else {
            "tour: FAILED (see above)"
        }
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// Parses `args` and runs them; help and version go to standard output (exit 0), errors to
/// standard error (exit 2).
fn dispatch(args: &[String]) -> ExitCode {
    let cli = match Cli::try_parse_full(args) {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            // clap writes help and version to standard output, errors to standard error; a
            // closed pipe is ignored there.
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match &cli.cmd {
        None => run_demo(&cli.demo),
        Some(Cmd::Demo(d)) => run_demo(d),
        Some(Cmd::Nvme { cmd }) => ulp_ddp_cli::nvme_cli::main(cmd),
        Some(Cmd::Iscsi { cmd }) => ulp_ddp_cli::iscsi_cli::main(cmd),
        Some(Cmd::Tcp { cmd }) => ulp_ddp_cli::perf::tcp_main(cmd),
        Some(Cmd::PerfCompare(a)) => ulp_ddp_cli::compare::compare_main(a),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return tour();
    }
    dispatch(&args)
}

fn run_demo(args: &DemoArgs) -> ExitCode {
    let spec: Spec = args.spec();

    let w = run::workload(&spec);
    outln!(
        "demo: {} read commands, {} MB of payload in {} PDUs ({} control), digests {}, {} PDUs corrupted on purpose",
        w.commands.len(),
        mb(w.commands.iter().map(|c| c.data.len() as u64).sum()),
        w.pdus.len(),
        w.pdus.iter().filter(|p| p.is_none()).count(),
        if spec.digests { "on" } else { "off" },
        w.corrupted.len()
    );
    let copy = run::copy_path(&spec, &w);
    let reader = match run::reader_path(&spec, &w) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ulp-ddp: reader path failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reports = [copy, reader];
    print(&reports);
    outln!(
        "placed: bytes a device wrote; copied: CPU copies from a receive buffer (fused with the \
         digest); in-place: read from the socket straight into the command's buffer"
    );
    if reports.iter().all(|r| r.verified) {
        outln!("all buffers equal the reference; every corrupted PDU was caught");
        ExitCode::SUCCESS
    } else {
        eprintln!("ulp-ddp: verification FAILED");
        ExitCode::FAILURE
    }
}
