//! `ulp-ddp nvme read|write|perf [nvme-tcp://HOST:PORT/NQN/NSID] [options]`: the NVMe/TCP host
//! on a real target, or on the embedded one when no URL is given.

use std::io::Write as _;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{SgBuffer, Stats};
use ulp_nvme_tcp::driver::{Controller, ControllerOptions};
use ulp_nvme_tcp::target::{Target, TargetConfig};
use ulp_nvme_tcp::wire::Digests;
use ulp_nvme_tcp::{Data, Status};

/// Usage text of the `nvme` subcommand.
pub const USAGE: &str = "\
usage: ulp-ddp nvme read|write|perf [nvme-tcp://HOST:PORT/NQN/NSID] [options]

  read    read --count commands of --size bytes at consecutive blocks
  write   write them (a pattern)
  perf    write, then read back and verify
  With no URL an embedded NVMe/TCP target (RAM namespace) is started on 127.0.0.1.

  --size BYTES   bytes per command, a multiple of the block size (default 131072)
  --count N      commands per phase (default 256)
  --qd N         commands outstanding at once (default 8)
  --digests      header and data digests on
";

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `read`, `write` or `perf`.
    pub op: String,
    /// Host, port, subsystem NQN and namespace, or `None` for the embedded target.
    pub url: Option<(String, u16, String, u32)>,
    /// Bytes per command.
    pub size: usize,
    /// Commands per phase.
    pub count: usize,
    /// Queue depth.
    pub qd: u16,
    /// Header and data digests.
    pub digests: bool,
}

/// Parses `nvme-tcp://HOST:PORT/NQN/NSID`.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_url(url: &str) -> Result<(String, u16, String, u32), String> {
    let rest = url
        .strip_prefix("nvme-tcp://")
        .ok_or("the URL must start with nvme-tcp://")?;
    let (hostport, path) = rest.split_once('/').ok_or("missing /NQN/NSID")?;
    let (host, port) = hostport.rsplit_once(':').ok_or("missing :PORT")?;
    let port = port.parse().map_err(|e| format!("port: {e}"))?;
    let (nqn, nsid) = path.rsplit_once('/').ok_or("missing /NSID")?;
    let nsid = nsid.parse().map_err(|e| format!("NSID: {e}"))?;
    if nqn.is_empty() || host.is_empty() {
        return Err("empty host or NQN".into());
    }
    Ok((host.to_string(), port, nqn.to_string(), nsid))
}

/// Parses the subcommand's arguments.
///
/// # Errors
///
/// A message, or an empty one for `--help`.
pub fn parse(args: &[String]) -> Result<Spec, String> {
    let mut spec = Spec {
        op: String::new(),
        url: None,
        size: 128 * 1024,
        count: 256,
        qd: 8,
        digests: false,
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
            "read" | "write" | "perf" if spec.op.is_empty() => spec.op = arg.clone(),
            "--size" => spec.size = value("--size")?.max(1),
            "--count" => spec.count = value("--count")?.max(1),
            "--qd" => spec.qd = value("--qd")?.clamp(1, 1024) as u16,
            "--digests" => spec.digests = true,
            "-h" | "--help" => return Err(String::new()),
            url if url.starts_with("nvme-tcp://") => spec.url = Some(parse_url(url)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if spec.op.is_empty() {
        return Err("read, write or perf?".into());
    }
    Ok(spec)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9E37).wrapping_add(seed) as u8)
        .collect()
}

/// One phase's result.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// `read` or `write`.
    pub op: &'static str,
    /// Commands completed.
    pub commands: usize,
    /// Payload bytes.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Commands that failed.
    pub errors: usize,
    /// Reads whose data did not match what was written (perf only).
    pub mismatches: usize,
}

fn phase(
    c: &mut Controller<SwBackend>,
    spec: &Spec,
    write: bool,
    verify: bool,
) -> Result<PhaseResult, String> {
    let block = u64::from(c.namespace().block_size.max(1));
    let per_cmd = spec.size as u64 / block;
    let slots = (c.namespace().nsze / per_cmd.max(1)).max(1);
    let mut outstanding = std::collections::HashMap::new();
    let start = Instant::now();
    let mut last_progress = start;
    let (mut next, mut done, mut errors, mut mismatches) = (0usize, 0usize, 0usize, 0usize);
    while done < spec.count {
        while next < spec.count && outstanding.len() < usize::from(spec.qd) {
            let slba = (next as u64 % slots) * per_cmd;
            let sqe = if write {
                c.write_cmd(slba, spec.size as u64)
            } else {
                c.read_cmd(slba, spec.size as u64)
            }
            .map_err(|e| e.to_string())?;
            let data = if write {
                Data::Write(pattern(spec.size, slba))
            } else {
                Data::Read(SgBuffer::zeroed(spec.size))
            };
            let cid = c.io().submit(sqe, data).map_err(|e| e.to_string())?;
            outstanding.insert(cid, slba);
            next += 1;
        }
        let completion = c.io().next_completion().map_err(|e| e.to_string())?;
        let slba = outstanding.remove(&completion.cid).unwrap_or(0);
        done += 1;
        if completion.status != Status::SUCCESS {
            errors += 1;
        } else if verify
            && completion
                .buffer
                .is_some_and(|b| b.into_vec() != pattern(spec.size, slba))
        {
            mismatches += 1;
        }
        if last_progress.elapsed() > Duration::from_millis(200) {
            last_progress = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r{} {done}/{} commands, {:.1} MiB/s   ",
                if write { "write" } else { "read" },
                spec.count,
                (done * spec.size) as f64 / secs / (1 << 20) as f64
            );
            let _ = std::io::stderr().flush();
        }
    }
    if last_progress != start {
        eprintln!();
    }
    Ok(PhaseResult {
        op: if write { "write" } else { "read" },
        commands: done,
        bytes: (done * spec.size) as u64,
        elapsed: start.elapsed(),
        errors,
        mismatches,
    })
}

/// Runs `spec`; returns the phases and the I/O queue's counters.
///
/// # Errors
///
/// Connection or set-up failures, as a message.
pub fn run(spec: &Spec) -> Result<(Vec<PhaseResult>, Stats, String), String> {
    let embedded;
    let (addr, nqn, nsid) = match &spec.url {
        Some((host, port, nqn, nsid)) => (format!("{host}:{port}"), nqn.clone(), *nsid),
        None => {
            let config = TargetConfig {
                ns_bytes: 64 << 20,
                ..TargetConfig::default()
            };
            embedded = Target::start(config).map_err(|e| format!("embedded target: {e}"))?;
            (
                embedded.addr().to_string(),
                embedded.subnqn().to_string(),
                1,
            )
        }
    };
    let mut o = ControllerOptions::new(&nqn);
    o.nsid = nsid;
    o.queue_depth = spec.qd.saturating_add(1);
    o.digests = if spec.digests {
        Digests::BOTH
    } else {
        Digests::NONE
    };
    let mut c = Controller::connect(addr.as_str(), &o, |_| SwBackend::new())
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let ns = c.namespace();
    if !(spec.size as u64).is_multiple_of(u64::from(ns.block_size.max(1))) {
        return Err(format!("--size must be a multiple of {}", ns.block_size));
    }
    let target = format!(
        "{addr} {nqn} ns {nsid} ({} x {} B, MN {:?})",
        ns.nsze,
        ns.block_size,
        c.info().model
    );
    let mut phases = Vec::new();
    match spec.op.as_str() {
        "read" => phases.push(phase(&mut c, spec, false, false)?),
        "write" => phases.push(phase(&mut c, spec, true, false)?),
        _ => {
            phases.push(phase(&mut c, spec, true, false)?);
            phases.push(phase(&mut c, spec, false, true)?);
        }
    }
    Ok((phases, c.io().queue().stats(), target))
}

/// The `nvme` subcommand: parses `args` (after `nvme`), runs, prints the result table.
pub fn main(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let spec = match parse(args) {
        Ok(s) => s,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("ulp-ddp nvme: {msg}");
            }
            eprint!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let (phases, stats, target) = match run(&spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ulp-ddp nvme: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "target: {target}; {} B x {} at QD {}, digests {}",
        spec.size,
        spec.count,
        spec.qd,
        if spec.digests { "on" } else { "off" }
    );
    println!(
        "{:<6} {:>8} {:>10} {:>9} {:>10} {:>9} {:>7} {:>10}",
        "op", "commands", "MiB", "seconds", "IOPS", "MiB/s", "errors", "mismatches"
    );
    let mut failed = false;
    for p in &phases {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<6} {:>8} {:>10.1} {:>9.3} {:>10.0} {:>9.1} {:>7} {:>10}",
            p.op,
            p.commands,
            p.bytes as f64 / (1 << 20) as f64,
            secs,
            p.commands as f64 / secs,
            p.bytes as f64 / secs / (1 << 20) as f64,
            p.errors,
            p.mismatches
        );
        failed |= p.errors > 0 || p.mismatches > 0;
    }
    println!(
        "placement: read in place {} B, copied {} B, placed by device {} B; digests computed {}, failed {}",
        stats.bytes_read_in_place,
        stats.bytes_copied,
        stats.bytes_placed,
        stats.digests_computed,
        stats.digests_failed
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn urls_and_options() {
        assert_eq!(
            parse_url("nvme-tcp://127.0.0.1:4420/nqn.2024-01.io.x:ram0/1"),
            Ok(("127.0.0.1".into(), 4420, "nqn.2024-01.io.x:ram0".into(), 1))
        );
        assert!(parse_url("nvme-tcp://h/n/1").is_err());
        assert!(parse_url("tcp://h:1/n/1").is_err());
        let s = parse(&args("perf --size 4096 --count 3 --qd 2 --digests")).expect("parse");
        assert_eq!(
            (s.op.as_str(), s.size, s.count, s.qd, s.digests, s.url),
            ("perf", 4096, 3, 2, true, None)
        );
        assert!(parse(&args("frob")).is_err());
        assert!(parse(&args("--size 4096")).is_err());
    }

    #[test]
    fn perf_on_the_embedded_target() {
        let spec = parse(&args("perf --size 65536 --count 40 --qd 4 --digests")).expect("spec");
        let (phases, stats, target) = run(&spec).expect("run");
        assert!(target.contains("embedded"), "{target}");
        assert_eq!(phases.len(), 2);
        for p in &phases {
            assert_eq!((p.commands, p.errors, p.mismatches), (40, 0, 0));
        }
        assert_eq!(stats.bytes_copied, 0);
        assert_eq!(stats.bytes_read_in_place, 40 * 65536);
    }
}
