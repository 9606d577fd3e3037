//! `ulp-ddp iscsi read|write|perf [iscsi://HOST:PORT/IQN/LUN]`: the iSCSI initiator from the
//! command line. Without a URL it starts the embedded target (a RAM LUN on 127.0.0.1).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ulp_ddp_core::SgBuffer;
use ulp_iscsi::conn::ChapCredentials;
use ulp_iscsi::keys::DigestPref;
use ulp_iscsi::target::{EmbeddedTarget, TargetConfig};
use ulp_iscsi::url::IscsiUrl;
use ulp_iscsi::wire::Lun;
use ulp_iscsi::{Bytes, Client, ClientOptions, Command, DataDir, LoginConfig, scsi};

const USAGE: &str = "\
usage: ulp-ddp iscsi read|write|perf [iscsi://[user%secret@]HOST[:PORT]/IQN/LUN] [options]

  read   read --len bytes at --lba and print their CRC32C (--out FILE to save them)
  write  write a pattern (or --in FILE) at --lba, read it back and compare
  perf   --qd reads (or writes with --write) of --bs bytes for --seconds
Without a URL the embedded target (16 MiB RAM LUN on 127.0.0.1) is started.

options:
  --lba N        first block (default 0)
  --len BYTES    bytes to read or write (default 131072)
  --digests      ask for CRC32C header and data digests
  --bs BYTES     perf I/O size (default 4096)
  --qd N         perf queue depth (default 8)
  --seconds S    perf duration (default 2)
  --write        perf writes instead of reads
  --in FILE / --out FILE
  --initiator IQN (default iqn.2024-01.io.ulp-ddp:cli)
";

struct Args {
    cmd: String,
    url: Option<String>,
    lba: u64,
    len: usize,
    digests: bool,
    bs: usize,
    qd: usize,
    seconds: f64,
    write: bool,
    input: Option<String>,
    output: Option<String>,
    initiator: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        cmd: String::new(),
        url: None,
        lba: 0,
        len: 128 * 1024,
        digests: false,
        bs: 4096,
        qd: 8,
        seconds: 2.0,
        write: false,
        input: None,
        output: None,
        initiator: "iqn.2024-01.io.ulp-ddp:cli".into(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|e| format!("{name}: {e}"));
        match arg.as_str() {
            "read" | "write" | "perf" if a.cmd.is_empty() => a.cmd = arg.clone(),
            u if u.starts_with("iscsi://") => a.url = Some(u.to_string()),
            "--lba" => a.lba = num(value(arg)?, arg)?,
            "--len" => a.len = num(value(arg)?, arg)? as usize,
            "--bs" => a.bs = (num(value(arg)?, arg)? as usize).max(512),
            "--qd" => a.qd = (num(value(arg)?, arg)? as usize).clamp(1, 64),
            "--seconds" => {
                a.seconds = value(arg)?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--digests" => a.digests = true,
            "--write" => a.write = true,
            "--in" => a.input = Some(value(arg)?),
            "--out" => a.output = Some(value(arg)?),
            "--initiator" => a.initiator = value(arg)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.cmd.is_empty() {
        return Err("read, write or perf?".into());
    }
    Ok(a)
}

/// Runs the `iscsi` subcommand with the arguments after it.
pub fn main(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("ulp-ddp iscsi: {msg}");
            }
            eprint!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ulp-ddp iscsi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // The embedded target lives until the end of the run.
    let (_target, url) = match &a.url {
        Some(u) => (None, IscsiUrl::parse(u)?),
        None => {
            let t = EmbeddedTarget::start(TargetConfig::default())?;
            println!("embedded target: {}", t.url());
            let url = IscsiUrl::parse(&t.url())?;
            (Some(t), url)
        }
    };
    let mut config = LoginConfig::normal(&a.initiator, &url.target);
    if a.digests {
        config.wanted.header_digest = DigestPref::Require;
        config.wanted.data_digest = DigestPref::Require;
    }
    if let Some(user) = &url.user {
        config.chap = Some(ChapCredentials {
            user: user.clone(),
            secret: url.password.clone().unwrap_or_default().into_bytes(),
        });
    }
    let mut c = Client::connect(url.addr(), config, ClientOptions::default())?;
    let p = c.connection().params().clone();
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
    let lun = Lun::single_level(u8::try_from(url.lun).map_err(|_| "LUN above 255")?);
    c.test_unit_ready(lun)?;
    let cap = c.read_capacity(lun)?;
    println!(
        "capacity: {} blocks of {} bytes ({} MiB)",
        cap.blocks(),
        cap.block_len,
        cap.bytes() >> 20
    );
    let bl = cap.block_len.max(1) as usize;
    match a.cmd.as_str() {
        "read" => {
            let len = a.len.div_ceil(bl) * bl;
            let data = c.read(lun, a.lba, (len / bl) as u32, cap.block_len)?;
            println!(
                "read {} bytes at LBA {}: crc32c {:#010x}",
                data.len(),
                a.lba,
                ulp_ddp_core::digest::crc32c(&data)
            );
            if let Some(out) = &a.output {
                std::fs::write(out, &data)?;
            }
        }
        "write" => {
            let mut data = match &a.input {
                Some(f) => std::fs::read(f)?,
                None => (0..a.len)
                    .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                    .collect(),
            };
            data.resize(data.len().div_ceil(bl) * bl, 0);
            let data = Bytes::from(data);
            c.write(lun, a.lba, cap.block_len, data.clone())?;
            let back = c.read(lun, a.lba, (data.len() / bl) as u32, cap.block_len)?;
            if back != data[..] {
                return Err("read-back differs from what was written".into());
            }
            println!(
                "wrote and read back {} bytes at LBA {}: identical",
                data.len(),
                a.lba
            );
        }
        _ => perf(&mut c, a, lun, cap.block_len, cap.blocks())?,
    }
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
    c.logout()?;
    Ok(())
}

fn perf(
    c: &mut Client,
    a: &Args,
    lun: Lun,
    block_len: u32,
    blocks: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let bl = block_len.max(1) as usize;
    let io_blocks = (a.bs.div_ceil(bl)) as u64;
    let span = blocks.saturating_sub(io_blocks).max(1);
    let payload = Bytes::from(vec![0x5Au8; io_blocks as usize * bl]);
    let mut next = 0u64;
    let mut submit = |c: &mut Client| {
        let lba = (next * io_blocks) % span;
        next += 1;
        let (cdb, data) = if a.write {
            (
                scsi::write_16(lba, io_blocks as u32),
                DataDir::Write(payload.clone()),
            )
        } else {
            (
                scsi::read_16(lba, io_blocks as u32),
                DataDir::Read(SgBuffer::zeroed(io_blocks as usize * bl)),
            )
        };
        c.submit(Command { lun, cdb, data })
    };
    for _ in 0..a.qd {
        submit(c);
    }
    let start = Instant::now();
    let limit = Duration::from_secs_f64(a.seconds.max(0.1));
    let mut done = 0u64;
    let mut inflight = a.qd;
    while inflight > 0 {
        let comp = c.wait_any()?;
        inflight -= 1;
        if !comp.result.map(|o| o.is_good()).unwrap_or(false) {
            return Err("an I/O failed".into());
        }
        done += 1;
        if start.elapsed() < limit {
            submit(c);
            inflight += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = done * io_blocks * block_len as u64;
    println!(
        "perf: {} {} I/Os of {} bytes at QD {} in {:.2} s: {:.0} IOPS, {:.1} MB/s",
        done,
        if a.write { "write" } else { "read" },
        io_blocks as usize * bl,
        a.qd,
        secs,
        done as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
