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

use ulp_ddp_cli::run::{self, Report, Spec};

const USAGE: &str = "\
usage: ulp-ddp                    the tour: demo, then NVMe/TCP and iSCSI against embedded targets
       ulp-ddp demo [options]
       ulp-ddp nvme|iscsi ...     (see ulp-ddp nvme --help, ulp-ddp iscsi --help)
       ulp-ddp tcp perf [flags]   the raw loopback TCP baseline
       ulp-ddp perf-compare [--repeat N] [flags]   tcp, nvme, iscsi back to back, with ratios

demo (default): run a generated read workload through the receive engine
  --commands N     commands in the workload (default 64)
  --max-len BYTES  largest command (default 1048576)
  --piece BYTES    largest stream piece on the copy path (default 65536)
  --no-digests     header and data digests off (default on)
  --no-corrupt     corrupt no PDU (default: some, to show the digest catching them)
  --seed N         generator seed (default 1)
";

fn parse(args: &[String]) -> Result<Spec, String> {
    let mut spec = Spec {
        commands: 64,
        max_len: 1 << 20,
        digests: true,
        corrupt: true,
        max_piece: 64 * 1024,
        seed: 1,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "demo" => {}
            "--commands" => spec.commands = value("--commands")?.max(1),
            "--max-len" => spec.max_len = value("--max-len")?.max(1),
            "--piece" => spec.max_piece = value("--piece")?.max(1),
            "--seed" => spec.seed = value("--seed")? as u64,
            "--no-digests" => spec.digests = false,
            "--no-corrupt" => spec.corrupt = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(spec)
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn print(reports: &[Report]) {
    println!(
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
        println!(
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
    println!("== 1/3 receive engine demo (ulp-ddp demo)");
    let demo = run_demo(&[]);
    println!("\n== 2/3 NVMe/TCP host vs the embedded target (ulp-ddp nvme verify --digests)");
    let nvme = ulp_ddp_cli::nvme_cli::main(&strings(&["verify", "--digests", "--count", "32"]));
    println!("\n== 3/3 iSCSI initiator vs the embedded target (ulp-ddp iscsi write --digests)");
    let iscsi = ulp_ddp_cli::iscsi_cli::main(&strings(&["write", "--digests", "--len", "1048576"]));
    let ok = [demo, nvme, iscsi].iter().all(|c| *c == ExitCode::SUCCESS);
    println!(
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return tour();
    }
    if args.first().map(String::as_str) == Some("iscsi") {
        return ulp_ddp_cli::iscsi_cli::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("nvme") {
        return ulp_ddp_cli::nvme_cli::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("tcp") {
        return ulp_ddp_cli::perf::tcp_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("perf-compare") {
        return ulp_ddp_cli::compare::compare_main(&args[1..]);
    }
    run_demo(&args)
}

fn run_demo(args: &[String]) -> ExitCode {
    let spec = match parse(args) {
        Ok(spec) => spec,
        Err(msg) => return ulp_ddp_cli::usage_exit("ulp-ddp", &msg, USAGE),
    };
    let w = run::workload(&spec);
    println!(
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
    println!(
        "placed: bytes a device wrote; copied: CPU copies from a receive buffer (fused with the \
         digest); in-place: read from the socket straight into the command's buffer"
    );
    if reports.iter().all(|r| r.verified) {
        println!("all buffers equal the reference; every corrupted PDU was caught");
        ExitCode::SUCCESS
    } else {
        eprintln!("ulp-ddp: verification FAILED");
        ExitCode::FAILURE
    }
}
