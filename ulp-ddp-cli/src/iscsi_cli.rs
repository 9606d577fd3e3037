//! `ulp-ddp iscsi read|write|verify|perf [iscsi://HOST:PORT/IQN/LUN]`: the iSCSI initiator
//! from the command line. Without a URL it starts the embedded target (a RAM LUN on
//! 127.0.0.1). What the session's recovery does is printed as it happens.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SgBuffer;
use ulp_iscsi::blocking::{Options, Session};
use ulp_iscsi::connection::ChapCredentials;
use ulp_iscsi::keys::DigestPref;
use ulp_iscsi::url::IscsiUrl;
use ulp_iscsi::wire::Lun;
use ulp_iscsi::{Command, CommandId, ConnectionConfig, Data, scsi};
use ulp_testbed::iscsi::{Target, TargetConfig};

use crate::perf::{PerfIo, PerfResult, PerfSpec, closed_loop, stats_delta};

const USAGE: &str = "\
usage: ulp-ddp iscsi read|write|verify|perf [iscsi://[user%secret@]HOST[:PORT]/IQN/LUN] [options]

  read    read --len bytes at --lba and print their CRC32C (--out FILE to save them)
  write   write a pattern (or --in FILE) at --lba, read it back and compare
  verify  write --count commands of --bs bytes (a pattern) from --lba with --qd outstanding,
          then read them all back the same way and compare every byte
  perf    the shared perf mode: --qd reads (or writes with --write) of --bs bytes for
          --seconds (or --count commands); see the perf flags below
Without a URL the embedded target (16 MiB RAM LUN on 127.0.0.1) is started (and, for a perf
read run, written first).

options:
  --lba N        first block (default 0)
  --len BYTES    bytes to read or write (default 131072)
  --bs BYTES / --count N / --qd N   verify: bytes per command (default 65536), commands
                 (default 256), commands outstanding (default 16)
  --passes N     verify: write and read back N times, a new pattern each time (default 1)
  --digests      ask for CRC32C header and data digests
  --in FILE / --out FILE
  --initiator IQN (default iqn.2024-01.io.ulp-ddp:cli)
  Recovery (defaults as open-iscsi's; seconds, fractions allowed; also for perf):
  --noop-interval S        NOP-Out ping after S idle (default 5; 0: none)
  --noop-timeout S         an unanswered ping ends the connection after S (default 5)
  --task-timeout S         a command outstanding S starts the connection's recovery ladder
                           (default 30; 0: none)
  --replacement-timeout S  reinstate the session for at most S after losing the connection,
                           then fail every command (default 120)
  --reconnect-delay S      between reinstatement attempts (default 3)
  --login-timeout S        one reinstatement attempt's limit (default 15)
";

/// Recovery settings from the command line; `None` keeps the library's default.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Recovery {
    noop_interval: Option<Duration>,
    noop_timeout: Option<Duration>,
    task_timeout: Option<Duration>,
    replacement_timeout: Option<Duration>,
    reconnect_delay: Option<Duration>,
    login_timeout: Option<Duration>,
}

impl Recovery {
    /// Parses one recovery flag and its value from `it`; `Ok(false)` when `arg` is not one.
    fn parse<'a>(
        &mut self,
        arg: &str,
        it: &mut impl Iterator<Item = &'a String>,
    ) -> Result<bool, String> {
        let slot = match arg {
            "--noop-interval" => &mut self.noop_interval,
            "--noop-timeout" => &mut self.noop_timeout,
            "--task-timeout" => &mut self.task_timeout,
            "--replacement-timeout" => &mut self.replacement_timeout,
            "--reconnect-delay" => &mut self.reconnect_delay,
            "--login-timeout" => &mut self.login_timeout,
            _ => return Ok(false),
        };
        *slot = Some(crate::seconds_arg(arg, it)?);
        Ok(true)
    }

    /// Applies the settings given to the connection's configuration and the driver's options.
    fn apply(&self, config: &mut ConnectionConfig, o: &mut Options) {
        if let Some(i) = self.noop_interval {
            config.noop_interval = (!i.is_zero()).then_some(i);
        }
        if let Some(t) = self.noop_timeout {
            config.noop_timeout = t;
        }
        if let Some(t) = self.task_timeout {
            config.task_timeout = (!t.is_zero()).then_some(t);
        }
        if let Some(t) = self.replacement_timeout {
            o.replacement_timeout = t;
        }
        if let Some(d) = self.reconnect_delay {
            o.reconnect_delay = d;
        }
        if let Some(t) = self.login_timeout {
            o.login_timeout = t;
        }
    }
}

/// Prints what the session's recovery did since the last call (standard error).
fn print_events(c: &mut Session<SwBackend>) {
    for event in c.take_events() {
        eprintln!("{event}");
    }
}

struct Args {
    cmd: String,
    url: Option<String>,
    lba: u64,
    len: usize,
    bs: usize,
    count: usize,
    qd: usize,
    passes: usize,
    digests: bool,
    input: Option<String>,
    output: Option<String>,
    initiator: String,
    recovery: Recovery,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        cmd: String::new(),
        url: None,
        lba: 0,
        len: 128 * 1024,
        bs: 64 * 1024,
        count: 256,
        qd: 16,
        passes: 1,
        digests: false,
        input: None,
        output: None,
        initiator: "iqn.2024-01.io.ulp-ddp:cli".into(),
        recovery: Recovery::default(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if a.recovery.parse(arg, &mut it)? {
            continue;
        }
        let mut value = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|e| format!("{name}: {e}"));
        match arg.as_str() {
            "read" | "write" | "verify" if a.cmd.is_empty() => a.cmd = arg.clone(),
            u if u.starts_with("iscsi://") => a.url = Some(u.to_string()),
            "--lba" => a.lba = num(value(arg)?, arg)?,
            "--len" => a.len = num(value(arg)?, arg)? as usize,
            "--bs" => a.bs = (num(value(arg)?, arg)? as usize).max(1),
            "--count" => a.count = (num(value(arg)?, arg)? as usize).max(1),
            "--qd" => a.qd = (num(value(arg)?, arg)? as usize).clamp(1, 1024),
            "--passes" => a.passes = (num(value(arg)?, arg)? as usize).max(1),
            "--digests" => a.digests = true,
            "--in" => a.input = Some(value(arg)?),
            "--out" => a.output = Some(value(arg)?),
            "--initiator" => a.initiator = value(arg)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.cmd.is_empty() {
        return Err("read, write, verify or perf?".into());
    }
    Ok(a)
}

/// Runs the `iscsi` subcommand with the arguments after it.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "perf") {
        return perf_main(args);
    }
    let a = match parse(args) {
        Ok(a) => a,
        Err(msg) => return crate::usage_exit("ulp-ddp iscsi", &msg, USAGE),
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ulp-ddp iscsi: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A logged-in session, the LUN and its capacity, and the embedded target if one was started.
pub(crate) struct Opened {
    pub(crate) target: Option<Target>,
    pub(crate) client: Session<SwBackend>,
    pub(crate) lun: Lun,
    pub(crate) cap: scsi::Capacity,
    pub(crate) name: String,
}

pub(crate) fn open(
    url: Option<&str>,
    initiator: &str,
    digests: bool,
    queue_depth: u32,
    recovery: &Recovery,
    verbose: bool,
) -> Result<Opened, Box<dyn std::error::Error>> {
    // The embedded target lives until the end of the run.
    let (target, url) = match url {
        Some(u) => (None, IscsiUrl::parse(u)?),
        None => {
            let t = Target::start(TargetConfig::default())
                .map_err(|e| format!("embedded target: {e}"))?;
            if verbose {
                println!("embedded target: {}", t.url());
            }
            let url = IscsiUrl::parse(&t.url())?;
            (Some(t), url)
        }
    };
    let mut config = ConnectionConfig::normal(initiator, &url.target);
    config.queue_depth = queue_depth.max(config.queue_depth);
    if digests {
        config.wanted.header_digest = DigestPref::Require;
        config.wanted.data_digest = DigestPref::Require;
    }
    if let Some(user) = &url.user {
        config.chap = Some(ChapCredentials {
            user: user.clone(),
            secret: url.password.clone().unwrap_or_default().into_bytes(),
        });
    }
    let mut options = Options::default();
    recovery.apply(&mut config, &mut options);
    let addr = url.addr();
    let mut c = Session::connect_with(addr.clone(), config, SwBackend::new, options)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // What recovery does is printed as it happens.
    c.on_event(|e| eprintln!("{e}"));
    let p = c.connection().params().clone();
    if verbose {
        println!(
            "logged in to {} (TSIH {}): HeaderDigest={} DataDigest={} MaxRecvDataSegmentLength out={} in={} MaxBurstLength={} FirstBurstLength={} InitialR2T={} ImmediateData={}",
            url.target,
            c.connection().tsih(),
            p.header_digest,
            p.data_digest,
            p.max_xmit_data_segment_len,
            p.max_recv_data_segment_len,
            p.max_burst_len,
            p.first_burst_len,
            p.initial_r2t,
            p.immediate_data
        );
    }
    let lun = Lun::single_level(u8::try_from(url.lun).map_err(|_| "LUN above 255")?);
    c.test_unit_ready(lun)?;
    let cap = c.read_capacity(lun)?;
    if verbose {
        println!(
            "capacity: {} blocks of {} bytes ({} MiB)",
            cap.blocks(),
            cap.block_len,
            cap.bytes() >> 20
        );
    }
    let name = format!(
        "iscsi {}{} {} LUN {} ({} x {} B, MaxRecvDataSegmentLength in {})",
        if target.is_some() { "embedded " } else { "" },
        url.addr(),
        url.target,
        url.lun,
        cap.blocks(),
        cap.block_len,
        p.max_recv_data_segment_len
    );
    Ok(Opened {
        target,
        client: c,
        lun,
        cap,
        name,
    })
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let Opened {
        target: _target,
        client: mut c,
        lun,
        cap,
        ..
    } = open(
        a.url.as_deref(),
        &a.initiator,
        a.digests,
        u32::try_from(a.qd).unwrap_or(1024),
        &a.recovery,
        true,
    )?;
    let bl = cap.block_len.max(1) as usize;
    let result = match a.cmd.as_str() {
        "verify" => verify(&mut c, lun, cap, a),
        _ => read_or_write(&mut c, lun, bl, a),
    };
    print_events(&mut c);
    result?;
    let s = c.connection().engine().stats();
    println!(
        "engine: {} PDUs, {} data PDUs, {} bytes read in place, {} bytes copied, {} digests computed, {} failed",
        s.pdus,
        s.data_pdus,
        s.bytes_read_in_place,
        s.bytes_copied,
        s.digests_computed,
        s.digests_failed
    );
    if c.reinstatements() > 0 {
        println!("session reinstated {} time(s)", c.reinstatements());
    }
    let r = c.logout();
    print_events(&mut c);
    r?;
    Ok(())
}

fn read_or_write(
    c: &mut Session<SwBackend>,
    lun: Lun,
    bl: usize,
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    match a.cmd.as_str() {
        "read" => {
            let len = a.len.div_ceil(bl) * bl;
            let data = c.read(lun, a.lba, SgBuffer::zeroed(len))?.into_vec();
            println!(
                "read {} bytes at LBA {}: crc32c {:#010x}",
                data.len(),
                a.lba,
                ulp_ddp_core::digest::crc32c(&data)
            );
            if let Some(out) = &a.output {
                std::fs::write(out, &data).map_err(|e| format!("write {out}: {e}"))?;
            }
        }
        "write" => {
            let mut data = match &a.input {
                Some(f) => std::fs::read(f).map_err(|e| format!("read {f}: {e}"))?,
                None => (0..a.len)
                    .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                    .collect(),
            };
            data.resize(data.len().div_ceil(bl) * bl, 0);
            let data = c.write(lun, a.lba, SgBuffer::from_vec(data))?.into_vec();
            print_events(c);
            let back = c.read(lun, a.lba, SgBuffer::zeroed(data.len()))?;
            if back.into_vec() != data {
                return Err("read-back differs from what was written".into());
            }
            println!(
                "wrote and read back {} bytes at LBA {}: identical",
                data.len(),
                a.lba
            );
        }
        _ => return Err("read or write?".into()),
    }
    Ok(())
}

/// The pattern `verify` writes for the command at `lba` in pass `pass`.
fn verify_pattern(len: usize, lba: u64, pass: usize) -> Vec<u8> {
    let seed = lba.wrapping_mul(31).wrapping_add(pass as u64 * 0x5bd1);
    (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9E37).wrapping_add(seed) as u8)
        .collect()
}

/// `verify`: writes `count` commands of `bs` bytes at `qd`, then reads them back at `qd` and
/// compares. Failed commands are counted and the first ten printed; every buffer is counted
/// back.
fn verify(
    c: &mut Session<SwBackend>,
    lun: Lun,
    cap: scsi::Capacity,
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let bl = cap.block_len.max(1) as usize;
    if !a.bs.is_multiple_of(bl) {
        return Err(format!("--bs must be a multiple of {bl}").into());
    }
    let per_cmd = (a.bs / bl) as u64;
    if a.lba + per_cmd * a.count as u64 > cap.blocks() {
        return Err(format!(
            "{} commands of {} blocks from LBA {} do not fit in {} blocks",
            a.count,
            per_cmd,
            a.lba,
            cap.blocks()
        )
        .into());
    }
    let mut failed_total = 0;
    let mut printed = 0;
    let phases = (1..=a.passes).flat_map(|p| [(p, true), (p, false)]);
    for (pass, write) in phases {
        let phase = if write { "write" } else { "read" };
        let start = Instant::now();
        let mut lba_of: HashMap<CommandId, u64> = HashMap::new();
        let (mut next, mut done, mut failed, mut mismatched, mut buffers) = (0, 0, 0, 0, 0);
        while done < a.count {
            while next < a.count && lba_of.len() < a.qd {
                let lba = a.lba + next as u64 * per_cmd;
                let (cdb, data) = if write {
                    (
                        scsi::write_16(lba, per_cmd as u32),
                        Data::Write(SgBuffer::from_vec(verify_pattern(a.bs, lba, pass))),
                    )
                } else {
                    (
                        scsi::read_16(lba, per_cmd as u32),
                        Data::Read(SgBuffer::zeroed(a.bs)),
                    )
                };
                next += 1;
                match c.submit(Command { lun, cdb, data }) {
                    Ok(id) => {
                        lba_of.insert(id, lba);
                    }
                    Err(e) => {
                        // Refused (the session was lost): the buffer comes back at once.
                        if printed < 10 {
                            printed += 1;
                            eprintln!("{phase} of {} bytes at LBA {lba} failed: {e}", a.bs);
                        }
                        let back = e.into_buffer();
                        buffers += usize::from(back.is_some_and(|b| b.len() == a.bs as u64));
                        failed += 1;
                        done += 1;
                    }
                }
            }
            if lba_of.is_empty() {
                continue;
            }
            let comp = c.wait_any();
            print_events(c);
            let comp = comp?;
            let lba = lba_of
                .remove(&comp.id)
                .ok_or("completion for an unknown command")?;
            done += 1;
            buffers += usize::from(comp.buffer.as_ref().is_some_and(|b| b.len() == a.bs as u64));
            let ok = match &comp.result {
                Ok(o) if o.is_good() => true,
                Ok(o) => {
                    if printed < 10 {
                        printed += 1;
                        eprintln!(
                            "{phase} of {} bytes at LBA {lba}: SCSI status {} ({:#04x}){}",
                            a.bs,
                            scsi::status_name(o.status),
                            o.status,
                            o.sense.map(|s| format!(", sense {s}")).unwrap_or_default()
                        );
                    }
                    false
                }
                Err(e) => {
                    if printed < 10 {
                        printed += 1;
                        eprintln!("{phase} of {} bytes at LBA {lba} failed: {e}", a.bs);
                    }
                    false
                }
            };
            if !ok {
                failed += 1;
                continue;
            }
            if !write
                && comp
                    .buffer
                    .is_none_or(|b| b.into_vec() != verify_pattern(a.bs, lba, pass))
            {
                mismatched += 1;
            }
        }
        let label = if a.passes == 1 {
            String::new()
        } else {
            format!("pass {pass}/{} ", a.passes)
        };
        println!(
            "{label}{phase}: {} commands of {} bytes at QD {} in {:.2} s: {} failed, {} buffers back{}",
            a.count,
            a.bs,
            a.qd,
            start.elapsed().as_secs_f64(),
            failed,
            buffers,
            if write {
                String::new()
            } else {
                format!(", {mismatched} differ from what was written")
            }
        );
        if mismatched > 0 {
            return Err(format!("{mismatched} reads differ from what was written").into());
        }
        failed_total += failed;
        if let Some(why) = c.lost() {
            eprintln!("stopping: the session was lost ({why})");
            break;
        }
    }
    if printed >= 10 {
        eprintln!("(only the first 10 failed commands are listed)");
    }
    if failed_total > 0 {
        return Err(format!("{failed_total} commands failed").into());
    }
    println!(
        "verified {} bytes at LBA {}{}: every byte read back as written",
        a.bs * a.count,
        a.lba,
        if a.passes == 1 {
            String::new()
        } else {
            format!(", {} times", a.passes)
        }
    );
    Ok(())
}

/// The closed loop's iSCSI side: one buffer per slot, reused.
struct IscsiIo<'a> {
    c: &'a mut Session<SwBackend>,
    lun: Lun,
    write: bool,
    io_blocks: u64,
    span: u64,
    next: u64,
    bs: usize,
    bufs: Vec<Option<SgBuffer>>,
    slot_of: HashMap<CommandId, usize>,
}

impl PerfIo for IscsiIo<'_> {
    fn submit(&mut self, slot: usize) -> Result<(), String> {
        let lba = (self.next * self.io_blocks) % self.span;
        self.next += 1;
        let (cdb, data) = if self.write {
            let b = self.bufs[slot]
                .take()
                .unwrap_or_else(|| SgBuffer::from_vec(vec![0x5A; self.bs]));
            (scsi::write_16(lba, self.io_blocks as u32), Data::Write(b))
        } else {
            let b = self.bufs[slot]
                .take()
                .unwrap_or_else(|| SgBuffer::zeroed(self.bs));
            (scsi::read_16(lba, self.io_blocks as u32), Data::Read(b))
        };
        let id = self
            .c
            .submit(Command {
                lun: self.lun,
                cdb,
                data,
            })
            .map_err(|e| e.to_string())?;
        self.slot_of.insert(id, slot);
        Ok(())
    }

    fn wait(&mut self) -> Result<(usize, bool), String> {
        let comp = self.c.wait_any();
        print_events(self.c);
        let comp = comp.map_err(|e| e.to_string())?;
        if let Err(e) = &comp.result {
            eprintln!("command failed: {e}");
        }
        let slot = self
            .slot_of
            .remove(&comp.id)
            .ok_or("completion for an unknown command")?;
        self.bufs[slot] = comp.buffer;
        Ok((slot, comp.result.map(|o| o.is_good()).unwrap_or(false)))
    }
}

/// `iscsi perf`: the shared perf loop against `url` (or the embedded target, written first for
/// a read run).
///
/// # Errors
///
/// Connection, login or I/O failures, as a message.
pub fn perf(spec: &PerfSpec, url: Option<&str>) -> Result<PerfResult, String> {
    perf_as(
        spec,
        url,
        "iqn.2024-01.io.ulp-ddp:cli",
        &Recovery::default(),
    )
}

fn perf_as(
    spec: &PerfSpec,
    url: Option<&str>,
    initiator: &str,
    recovery: &Recovery,
) -> Result<PerfResult, String> {
    let qd = u32::try_from(spec.qd).unwrap_or(u32::MAX);
    let Opened {
        target,
        client: mut c,
        lun,
        cap,
        name,
    } = open(url, initiator, spec.digests, qd, recovery, false).map_err(|e| e.to_string())?;
    c.copy_small_payloads(spec.copy_below);
    let bl = cap.block_len.max(1) as usize;
    if !spec.bs.is_multiple_of(bl) {
        return Err(format!("--bs must be a multiple of {bl}"));
    }
    let io_blocks = (spec.bs / bl) as u64;
    let span = cap.blocks().saturating_sub(io_blocks).max(1);
    if target.is_some() && !spec.write {
        // Fill the LUN so that reads return written data.
        let chunk_blocks = ((256 * 1024) / bl).max(1) as u64;
        let mut lba = 0;
        while lba < cap.blocks() {
            let n = chunk_blocks.min(cap.blocks() - lba);
            let data: Vec<u8> = (0..n as usize * bl)
                .map(|i| (i as u64).wrapping_mul(0x9E37).wrapping_add(lba) as u8)
                .collect();
            c.write(lun, lba, SgBuffer::from_vec(data))
                .map_err(|e| e.to_string())?;
            lba += n;
        }
    }
    let before = c.connection().engine().stats();
    let mut io = IscsiIo {
        c: &mut c,
        lun,
        write: spec.write,
        io_blocks,
        span,
        next: 0,
        bs: spec.bs,
        bufs: (0..spec.qd).map(|_| None).collect(),
        slot_of: HashMap::new(),
    };
    let run = closed_loop(&mut io, spec, "iscsi")?;
    let stats = stats_delta(c.connection().engine().stats(), before);
    let _ = c.logout();
    print_events(&mut c);
    Ok(PerfResult {
        protocol: "iscsi".into(),
        target: name,
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

fn perf_main(args: &[String]) -> ExitCode {
    let parsed = PerfSpec::parse(args).and_then(|(spec, rest)| {
        let mut url = None;
        let mut initiator = "iqn.2024-01.io.ulp-ddp:cli".to_string();
        let mut recovery = Recovery::default();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            if recovery.parse(a, &mut it)? {
                continue;
            }
            match a.as_str() {
                "perf" => {}
                u if u.starts_with("iscsi://") => url = Some(u.to_string()),
                "--initiator" => {
                    initiator = it.next().cloned().ok_or("--initiator needs a value")?
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok((spec, url, initiator, recovery))
    });
    let json = parsed.as_ref().is_ok_and(|(spec, ..)| spec.json);
    let outcome = parsed.map(|(spec, url, initiator, recovery)| {
        perf_as(&spec, url.as_deref(), &initiator, &recovery)
    });
    crate::perf::finish("ulp-ddp iscsi", USAGE, json, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_mode_on_the_embedded_target() {
        for (write, digests) in [(false, false), (false, true), (true, false)] {
            let spec = PerfSpec {
                bs: 65536,
                qd: 4,
                limit: crate::perf::Limit::Count(30),
                write,
                digests,
                progress: false,
                ..PerfSpec::default()
            };
            let r = perf(&spec, None).expect("perf");
            assert_eq!((r.commands, r.errors), (30, 0));
            if !write {
                assert_eq!(r.stats.bytes_copied, 0);
                assert_eq!(r.stats.bytes_read_in_place, 30 * 65536);
                assert_eq!(r.stats.digests_failed, 0);
                assert_eq!(r.stats.digests_computed > 0, digests);
            }
        }
    }
}
