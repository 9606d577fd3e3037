//! `ulp-ddp nvme read|write|verify|perf [nvme-tcp://HOST:PORT/NQN/NSID] [options]`: the NVMe/TCP host
//! on a real target, or on the embedded one when no URL is given.

use std::io::Write as _;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{SgBuffer, Stats};
use ulp_nvme_tcp::blocking::{CommandId, Controller, Io, Options};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig};

use crate::perf::{EMBEDDED_BYTES, PerfIo, PerfResult, PerfSpec, closed_loop, stats_delta};

/// Usage text of the `nvme` subcommand.
pub const USAGE: &str = "\
usage: ulp-ddp nvme read|write|verify [nvme-tcp://HOST:PORT/NQN/NSID] [options]
       ulp-ddp nvme perf [nvme-tcp://HOST:PORT/NQN/NSID] [perf flags]
       ulp-ddp nvme discover [nvme-tcp://HOST[:PORT]] [--digests]

  read    read --count commands of --size bytes at consecutive blocks
  write   write them (a pattern)
  verify  write, then read back and verify
  perf    the shared perf mode (reads, or writes with --write); see the perf flags below
  discover  read the discovery controller's log and list its entries, as nvme discover does
            (port 4420 unless given)
  With no URL an embedded NVMe/TCP target (64 MiB RAM namespace, filled before a read run) is
  started on 127.0.0.1.

  --size BYTES   bytes per command, a multiple of the block size (default 131072)
  --count N      commands per phase (default 256)
  --qd N         commands outstanding at once (default 8)
  --digests      header and data digests on
  --queues N     I/O queues, each its own TCP connection (nvme-cli's --nr-io-queues, also
                 accepted; default 1; also for perf)
  Recovery (defaults as Linux's nvme-tcp host; seconds, fractions allowed):
  --keep-alive-tmo S   KATO given to Connect, Keep Alive every S/2 (default 5; 0: none)
  --io-timeout S       a command outstanding this long is aborted (default 30)
  --reconnect-delay S  wait before each reconnect after losing the controller (default 10)
  --ctrl-loss-tmo S    give up reconnecting, failing every command, after S (default 600)
";

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `read`, `write` or `verify`.
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
    /// Recovery settings given on the command line (`None`: the library's default).
    pub recovery: Recovery,
    /// I/O queues.
    pub queues: u16,
}

/// Recovery settings from the command line; `None` keeps [`Options::new`]'s default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// `--keep-alive-tmo`.
    pub kato: Option<Duration>,
    /// `--io-timeout`.
    pub io_timeout: Option<Duration>,
    /// `--reconnect-delay`.
    pub reconnect_delay: Option<Duration>,
    /// `--ctrl-loss-tmo`.
    pub ctrl_loss_tmo: Option<Duration>,
}

impl Recovery {
    /// Parses one recovery flag and its value from `it`; `Ok(false)` when `arg` is not one.
    fn parse<'a>(
        &mut self,
        arg: &str,
        it: &mut impl Iterator<Item = &'a String>,
    ) -> Result<bool, String> {
        let slot = match arg {
            "--keep-alive-tmo" => &mut self.kato,
            "--io-timeout" => &mut self.io_timeout,
            "--reconnect-delay" => &mut self.reconnect_delay,
            "--ctrl-loss-tmo" => &mut self.ctrl_loss_tmo,
            _ => return Ok(false),
        };
        *slot = Some(crate::seconds_arg(arg, it)?);
        Ok(true)
    }

    /// Applies the settings given to `o`.
    fn apply(&self, o: &mut Options) {
        if let Some(k) = self.kato {
            o.kato = k;
        }
        if let Some(t) = self.io_timeout {
            o.io_timeout = t;
        }
        if let Some(d) = self.reconnect_delay {
            o.reconnect_delay = d;
        }
        if let Some(t) = self.ctrl_loss_tmo {
            o.ctrl_loss_tmo = t;
        }
    }
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

/// Parses `nvme-tcp://HOST[:PORT][/]` (a discovery controller; port 4420 by default) into the
/// URL tuple with the discovery NQN.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_discovery_url(url: &str) -> Result<(String, u16, String, u32), String> {
    let rest = url
        .strip_prefix("nvme-tcp://")
        .ok_or("the URL must start with nvme-tcp://")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|e| format!("port: {e}"))?),
        None => (hostport, 4420),
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok((
        host.to_string(),
        port,
        ulp_nvme_tcp::nvme::DISCOVERY_NQN.to_string(),
        0,
    ))
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
        recovery: Recovery::default(),
        queues: 1,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if spec.recovery.parse(arg, &mut it)? {
            continue;
        }
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "read" | "write" | "verify" | "discover" if spec.op.is_empty() => {
                spec.op = arg.clone();
            }
            url if url.starts_with("nvme-tcp://") && spec.op == "discover" => {
                spec.url = Some(parse_discovery_url(url)?);
            }
            "--size" => spec.size = value("--size")?.max(1),
            "--count" => spec.count = value("--count")?.max(1),
            "--qd" => spec.qd = value("--qd")?.clamp(1, 1024) as u16,
            "--digests" => spec.digests = true,
            "--queues" | "--nr-io-queues" => spec.queues = value(arg)?.clamp(1, 64) as u16,
            "-h" | "--help" => return Err(String::new()),
            url if url.starts_with("nvme-tcp://") => spec.url = Some(parse_url(url)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if spec.op.is_empty() {
        return Err("read, write, verify, discover or perf?".into());
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
    /// Reads whose data did not match what was written (`verify` only).
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
    let start = Instant::now();
    let mut last_progress = start;
    let (mut next, mut done, mut errors, mut mismatches) = (0usize, 0usize, 0usize, 0usize);
    let mut bytes = 0u64;
    while done < spec.count {
        while next < spec.count && c.outstanding() < usize::from(spec.qd) {
            let slba = (next as u64 % slots) * per_cmd;
            let io = if write {
                Io::Write {
                    slba,
                    data: SgBuffer::from_vec(pattern(spec.size, slba)),
                }
            } else {
                Io::Read {
                    slba,
                    buffer: SgBuffer::zeroed(spec.size),
                }
            };
            c.submit(io).map_err(|e| e.to_string())?;
            next += 1;
        }
        let completion = c.wait(None).map_err(|e| e.to_string())?;
        for event in c.take_events() {
            eprintln!("\n{event}");
        }
        done += 1;
        if let Some(msg) = completion.error_message() {
            errors += 1;
            if errors <= 10 {
                eprintln!("\n{msg}");
            } else if errors == 11 {
                eprintln!("\n(further failed commands are counted, not listed)");
            }
            continue;
        }
        bytes += completion.len;
        if verify
            && completion
                .buffer
                .is_some_and(|b| b.into_vec() != pattern(spec.size, completion.slba))
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
                bytes as f64 / secs / (1 << 20) as f64
            );
            let _ = std::io::stderr().flush();
        }
    }
    if last_progress != start {
        eprintln!();
    }
    Ok(PhaseResult {
        op: if write { "write" } else { "read" },
        commands: done - errors,
        bytes,
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
    let (_embedded, mut c, target) = open(
        spec.url.as_ref(),
        spec.qd,
        spec.digests,
        &spec.recovery,
        spec.queues,
    )?;
    let ns = c.namespace();
    if !(spec.size as u64).is_multiple_of(u64::from(ns.block_size.max(1))) {
        return Err(format!("--size must be a multiple of {}", ns.block_size));
    }
    let mut phases = Vec::new();
    match spec.op.as_str() {
        "read" => phases.push(phase(&mut c, spec, false, false)?),
        "write" => phases.push(phase(&mut c, spec, true, false)?),
        _ => {
            phases.push(phase(&mut c, spec, true, false)?);
            phases.push(phase(&mut c, spec, false, true)?);
        }
    }
    let stats = c.stats();
    let reconnects = c.reconnects();
    c.close().map_err(|e| format!("shutdown: {e}"))?;
    let target = if reconnects > 0 {
        format!("{target}; reconnected {reconnects} time(s)")
    } else {
        target
    };
    Ok((phases, stats, target))
}

/// `nvme discover`: the discovery log of `spec.url` (or of a freshly started embedded target),
/// as `nvme discover` prints it.
///
/// # Errors
///
/// Connection, set-up or log failures, as a message naming the address.
pub fn discover(spec: &Spec) -> Result<String, String> {
    let mut embedded = None;
    let addr = match &spec.url {
        Some((host, port, ..)) => format!("{host}:{port}"),
        None => {
            let t =
                Target::start(embedded_config()).map_err(|e| format!("embedded target: {e}"))?;
            let a = t.addr().to_string();
            embedded = Some(t);
            a
        }
    };
    let mut o = Options::new(ulp_nvme_tcp::nvme::DISCOVERY_NQN);
    spec.recovery.apply(&mut o);
    if spec.digests {
        o.digests = Digests::BOTH;
    }
    let log =
        ulp_nvme_tcp::blocking::discover(addr.as_str(), &o).map_err(|e| format!("{addr}: {e}"))?;
    drop(embedded);
    Ok(log.to_string())
}

/// The embedded target's configuration for the CLI: an [`EMBEDDED_BYTES`] namespace, reads
/// answered in one C2HData PDU up to 1 MiB (like the Linux target, which does not split them).
fn embedded_config() -> TargetConfig {
    TargetConfig {
        size: EMBEDDED_BYTES as u64,
        max_c2h: 1 << 20,
        ..TargetConfig::default()
    }
}

type Opened = (Option<Target>, Controller<SwBackend>, String);

/// Connects to `url`, or to a freshly started embedded target.
pub(crate) fn open(
    url: Option<&(String, u16, String, u32)>,
    qd: u16,
    digests: bool,
    recovery: &Recovery,
    queues: u16,
) -> Result<Opened, String> {
    let mut embedded = None;
    let (addr, nqn, nsid) = match url {
        Some((host, port, nqn, nsid)) => (format!("{host}:{port}"), nqn.clone(), *nsid),
        None => {
            let t =
                Target::start(embedded_config()).map_err(|e| format!("embedded target: {e}"))?;
            let r = (t.addr().to_string(), t.subnqn().to_string(), 1);
            embedded = Some(t);
            r
        }
    };
    let mut o = Options::new(&nqn);
    recovery.apply(&mut o);
    o.queues = queues;
    o.nsid = nsid;
    o.queue_depth = qd.saturating_add(1);
    o.digests = if digests {
        Digests::BOTH
    } else {
        Digests::NONE
    };
    let c = Controller::connect_with(addr.as_str(), &o, |_| SwBackend::new())
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let ns = c.namespace();
    let n = c.io_queues().len();
    let target = format!(
        "{addr} {nqn} ns {nsid} ({} x {} B, MN {}), {n} I/O queue{}, {} KiB per command at most",
        ns.nsze,
        ns.block_size,
        c.info().model,
        if n == 1 { "" } else { "s" },
        c.max_transfer() / 1024
    );
    Ok((embedded, c, target))
}

/// The closed loop's NVMe side: one buffer per slot, reused (read buffers come back in the
/// completion, write data too).
struct NvmeIo<'a> {
    c: &'a mut Controller<SwBackend>,
    write: bool,
    bs: usize,
    per_cmd: u64,
    slots: u64,
    next: u64,
    bufs: Vec<Option<SgBuffer>>,
    slot_of: ulp_ddp_core::types::IdMap<CommandId, usize>,
}

impl PerfIo for NvmeIo<'_> {
    fn submit(&mut self, slot: usize) -> Result<(), String> {
        let slba = (self.next % self.slots) * self.per_cmd;
        self.next += 1;
        let buffer = self.bufs[slot].take();
        let io = if self.write {
            Io::Write {
                slba,
                data: buffer.unwrap_or_else(|| SgBuffer::from_vec(pattern(self.bs, slot as u64))),
            }
        } else {
            Io::Read {
                slba,
                buffer: buffer.unwrap_or_else(|| SgBuffer::zeroed(self.bs)),
            }
        };
        let id = self.c.submit(io).map_err(|e| e.to_string())?;
        self.slot_of.insert(id, slot);
        Ok(())
    }

    fn wait(&mut self) -> Result<(usize, bool), String> {
        let completion = self.c.wait(None).map_err(|e| e.to_string())?;
        for event in self.c.take_events() {
            eprintln!("\n{event}");
        }
        let slot = self
            .slot_of
            .remove(&completion.id)
            .filter(|&s| s < self.bufs.len())
            .ok_or_else(|| format!("completion of unknown command {}", completion.id.0))?;
        if let Some(msg) = completion.error_message() {
            eprintln!("\n{msg}");
        }
        let ok = completion.is_success();
        self.bufs[slot] = completion.buffer;
        Ok((slot, ok))
    }
}

/// `nvme perf`: the shared perf loop against `url` (or the embedded target, whose namespace is
/// written first so that reads return real data).
///
/// # Errors
///
/// Connection or set-up failures and I/O errors, as a message.
pub fn perf(
    spec: &PerfSpec,
    url: Option<&(String, u16, String, u32)>,
    queues: u16,
) -> Result<PerfResult, String> {
    let qd = u16::try_from(spec.qd).unwrap_or(1024);
    let (embedded, mut c, target) = open(url, qd, spec.digests, &Recovery::default(), queues)?;
    c.copy_small_payloads(spec.copy_below);
    let ns = c.namespace();
    let block = u64::from(ns.block_size.max(1));
    if !(spec.bs as u64).is_multiple_of(block) || spec.bs as u64 / block > 65536 {
        return Err(format!(
            "--bs must be 1..=65536 blocks of {}",
            ns.block_size
        ));
    }
    let per_cmd = spec.bs as u64 / block;
    let slots = (ns.nsze / per_cmd).max(1);
    if embedded.is_some() && !spec.write {
        // Fill the namespace (reads of never-written RAM would all hit the zero page).
        let chunk = (256 * 1024).min(ns.nsze * block) / block * block;
        let chunks = ns.nsze * block / chunk.max(1);
        for i in 0..chunks {
            let data = pattern(chunk as usize, i);
            c.write(i * chunk / block, SgBuffer::from_vec(data))
                .map_err(|e| e.to_string())?;
        }
    }
    let before = c.stats();
    let mut io = NvmeIo {
        c: &mut c,
        write: spec.write,
        bs: spec.bs,
        per_cmd,
        slots,
        next: 0,
        bufs: (0..spec.qd).map(|_| None).collect(),
        slot_of: ulp_ddp_core::types::IdMap::default(),
    };
    let run = closed_loop(&mut io, spec, "nvme-tcp")?;
    let stats = stats_delta(c.stats(), before);
    Ok(PerfResult {
        protocol: "nvme-tcp".into(),
        target: format!(
            "nvme-tcp {}{target}",
            if embedded.is_some() { "embedded " } else { "" }
        ),
        op: spec.op(),
        bs: spec.bs,
        qd: spec.qd,
        digests: spec.digests,
        commands: run.commands,
        errors: run.errors,
        elapsed: run.elapsed,
        latency: run.latency,
        host_cpu: run.host_cpu,
        stats,
    })
}

fn perf_main(args: &[String]) -> std::process::ExitCode {
    let parsed = PerfSpec::parse(args).and_then(|(spec, rest)| {
        let mut url = None;
        let mut queues = 1u16;
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "perf" => {}
                "--queues" | "--nr-io-queues" => {
                    let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                    queues = v
                        .parse::<u16>()
                        .map_err(|e| format!("{a} {v:?}: {e}"))?
                        .clamp(1, 64);
                }
                u if u.starts_with("nvme-tcp://") => url = Some(parse_url(u)?),
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok((spec, url, queues))
    });
    let json = parsed.as_ref().is_ok_and(|(spec, ..)| spec.json);
    let outcome = parsed.map(|(spec, url, queues)| perf(&spec, url.as_ref(), queues));
    crate::perf::finish("ulp-ddp nvme", USAGE, json, outcome)
}

/// The `nvme` subcommand: parses `args` (after `nvme`), runs, prints the result table.
pub fn main(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    if args.iter().any(|a| a == "perf") {
        return perf_main(args);
    }
    let spec = match parse(args) {
        Ok(s) => s,
        Err(msg) => return crate::usage_exit("ulp-ddp nvme", &msg, USAGE),
    };
    if spec.op == "discover" {
        return match discover(&spec) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ulp-ddp nvme discover: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
        let s = parse(&args("verify --size 4096 --count 3 --qd 2 --digests")).expect("parse");
        assert_eq!(
            (s.op.as_str(), s.size, s.count, s.qd, s.digests, s.url),
            ("verify", 4096, 3, 2, true, None)
        );
        assert!(parse(&args("frob")).is_err());
        assert!(parse(&args("--size 4096")).is_err());
    }

    #[test]
    fn perf_mode_on_the_embedded_target() {
        for extra in ["", "--digests", "--write --digests"] {
            let (spec, rest) = PerfSpec::parse(&args(&format!(
                "perf --bs 65536 --count 40 --qd 4 --no-progress {extra}"
            )))
            .expect("spec");
            assert_eq!(rest, args("perf"));
            let r = perf(&spec, None, 1).expect("perf");
            assert_eq!((r.commands, r.errors), (40, 0), "{extra}");
            assert_eq!(r.latency.count(), 40);
            assert!(r.json().contains("\"protocol\":\"nvme-tcp\""));
            if !spec.write {
                assert_eq!(r.stats.bytes_copied, 0);
                assert_eq!(r.stats.bytes_read_in_place, 40 * 65536);
                assert_eq!(r.copies_avoided(), 40 * 65536);
                // Header and data digests: C2HData (both) and CapsuleResp (header) per read.
                let digests = if spec.digests { 3 * 40 } else { 0 };
                assert_eq!(
                    (r.stats.digests_computed, r.stats.digests_failed),
                    (digests, 0)
                );
            }
        }
    }

    #[test]
    fn discover_lists_the_embedded_subsystem() {
        let spec = parse(&args("discover")).expect("spec");
        let text = discover(&spec).expect("discover");
        assert!(
            text.starts_with("\nDiscovery Log Number of Records 1, Generation counter"),
            "{text}"
        );
        assert!(text.contains("subtype: nvme subsystem"), "{text}");
        assert!(text.contains("trtype:  tcp"), "{text}");
        let url = parse(&args("discover nvme-tcp://10.0.0.1"))
            .expect("url")
            .url;
        assert_eq!(
            url,
            Some((
                "10.0.0.1".into(),
                4420,
                ulp_nvme_tcp::nvme::DISCOVERY_NQN.into(),
                0
            ))
        );
    }

    #[test]
    fn verify_on_four_queues() {
        let spec = parse(&args("verify --size 8192 --count 200 --qd 16 --queues 4")).expect("spec");
        assert_eq!(spec.queues, 4);
        let (embedded, mut c, _) = open(None, 17, false, &Recovery::default(), 4).expect("open");
        assert_eq!(
            c.io_queues().len(),
            4,
            "the embedded target grants 4 queues"
        );
        let mut ids = Vec::new();
        for i in 0..64u64 {
            let data = SgBuffer::from_vec(pattern(8192, i));
            ids.push(c.submit(Io::Write { slba: i * 16, data }).expect("submit"));
        }
        for _ in &ids {
            assert!(c.wait(None).expect("write").is_success());
        }
        let used = c
            .io_queues()
            .iter()
            .filter(|q| q.connection().stats().pdus > 0)
            .count();
        assert_eq!(used, 4, "every queue carried commands");
        c.close().expect("close");
        drop(embedded);
        let (phases, stats, _) = run(&spec).expect("run");
        for p in &phases {
            assert_eq!((p.commands, p.errors, p.mismatches), (200, 0, 0));
        }
        assert_eq!(stats.bytes_read_in_place, 200 * 8192);
        assert_eq!(stats.bytes_copied, 0);
    }

    #[test]
    fn recovery_flags() {
        let s = parse(&args(
            "verify --reconnect-delay 0.5 --ctrl-loss-tmo 3 --keep-alive-tmo 0 --io-timeout 2",
        ))
        .expect("parse");
        assert_eq!(
            s.recovery,
            Recovery {
                kato: Some(Duration::ZERO),
                io_timeout: Some(Duration::from_secs(2)),
                reconnect_delay: Some(Duration::from_millis(500)),
                ctrl_loss_tmo: Some(Duration::from_secs(3)),
            }
        );
        assert!(parse(&args("verify --ctrl-loss-tmo -1")).is_err());
        assert!(parse(&args("verify --reconnect-delay")).is_err());
    }

    #[test]
    fn verify_on_the_embedded_target() {
        let spec = parse(&args("verify --size 65536 --count 40 --qd 4 --digests")).expect("spec");
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
