//! `ulp-ddp iscsi read|write|verify|perf [iscsi://HOST:PORT/IQN/LUN]`: the iSCSI initiator
//! from the command line. Without a URL it starts the embedded target (a RAM LUN on
//! 127.0.0.1). What the session's recovery does is printed as it happens.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::Digests;
use ulp_ddp_core::SgBuffer;
use ulp_iscsi::blocking::{Options, Session};
use ulp_iscsi::connection::ChapCredentials;
use ulp_iscsi::keys::DigestPref;
use ulp_iscsi::url::IscsiUrl;
use ulp_iscsi::wire::Lun;

use crate::args::DigestsArg;
use ulp_iscsi::{Command, CommandId, ConnectionConfig, Data, scsi};
use ulp_testbed::iscsi::{Target, TargetConfig};

use crate::perf::{PerfIo, PerfResult, PerfSpec, closed_loop, stats_delta};

/// The write patterns and the CHAP secret's sources, in `--help`.
const NOTES: &str = "\
Data written without --in: write puts byte i = (i * 2654435761) mod 256 (i from 0 over all it
writes); verify gives the command at LBA L in pass P byte i = (i * 0x9E37 + L * 31 + P * 0x5bd1)
mod 256; perf writes bytes of 0x5A. Writing to a real target at LBA 0 prints a warning.
CHAP: the user goes in the URL (iscsi://USER@HOST/IQN/LUN), the secret in the environment
variable ULP_DDP_CHAP_SECRET or a file (--chap-secret-file); a secret in the URL
(USER%SECRET@) still works but is visible to every user in ps.";

/// The environment variable holding the CHAP secret.
pub const CHAP_SECRET_ENV: &str = "ULP_DDP_CHAP_SECRET";

/// `ulp-ddp iscsi ...`: the iSCSI initiator; without a URL the embedded target (a 16 MiB RAM
/// LUN on 127.0.0.1, written first for a perf read run).
#[derive(clap::Subcommand, Clone, Debug)]
pub enum IscsiCmd {
    /// Read --count commands of --bs bytes (default one) from --lba and print their CRC32C
    /// (--out FILE or - to save them)
    #[command(args_override_self = true, after_help = NOTES)]
    Read(ReadArgs),
    /// Write a pattern (or --in FILE, - for stdin) at --lba, read it back and compare
    #[command(args_override_self = true, after_help = NOTES)]
    Write(WriteArgs),
    /// Write --count commands of --bs bytes (a pattern) from --lba with --qd outstanding, then
    /// read them all back the same way and compare every byte
    #[command(args_override_self = true, after_help = NOTES)]
    Verify(VerifyArgs),
    /// The shared perf mode: --qd reads (or writes with --write) of --bs bytes for --seconds
    /// (or --count commands)
    #[command(args_override_self = true, after_help = NOTES)]
    Perf(IscsiPerfArgs),
    /// List the targets a portal offers (SendTargets=All), as iscsi-ls does; the URL needs
    /// only iscsi://HOST:PORT (without :PORT, 3260)
    #[command(args_override_self = true)]
    Discover(InfoArgs),
    /// REPORT LUNS, printed as sg_luns prints it
    #[command(args_override_self = true)]
    ReportLuns(InfoArgs),
    /// Standard INQUIRY of the URL's LUN, printed as iscsi-inq prints it
    #[command(args_override_self = true)]
    Inquiry(InfoArgs),
    /// READ CAPACITY(16) of the URL's LUN, printed as iscsi-readcapacity16 prints it
    #[command(args_override_self = true)]
    Readcap(InfoArgs),
}

/// The flags of `iscsi discover`, `report-luns`, `inquiry` and `readcap`.
#[derive(clap::Args, Clone, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    /// Where to log in.
    pub login: Login,
    #[command(flatten)]
    /// `--digests`.
    pub digests: DigestsArg,
}

/// Where and how to log in: the flags every iscsi subcommand takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Login {
    /// The target's URL (see the help text).
    #[arg(
        value_name = "URL",
        value_parser = url_arg,
        help = "iscsi://[USER@]HOST[:PORT]/IQN/LUN (port 3260 unless given; an IPv6 HOST in brackets, [::1]); without it, the embedded target"
    )]
    pub url: Option<String>,
    /// Initiator name
    #[arg(long, value_name = "IQN", default_value = "iqn.2024-01.io.ulp-ddp:cli")]
    pub initiator: String,
    /// Read the CHAP secret from FILE (trailing newline dropped) instead of
    /// ULP_DDP_CHAP_SECRET
    #[arg(long, value_name = "FILE")]
    pub chap_secret_file: Option<String>,
    #[command(flatten)]
    /// Recovery settings.
    pub recovery: Recovery,
}

/// The flags `iscsi read` and `write` share.
#[derive(clap::Args, Clone, Debug)]
pub struct IoArgs {
    #[command(flatten)]
    /// Where to log in.
    pub login: Login,
    #[command(flatten)]
    /// `--digests`.
    pub digests: DigestsArg,
    /// First logical block
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub lba: u64,
    /// Bytes per command, a multiple of the block size (4k, 128k, 1M ...)
    #[arg(long, visible_aliases = ["len", "size"], value_name = "BYTES", default_value = "128k", value_parser = crate::args::size)]
    pub bs: usize,
    /// Commands of --bs bytes, one after the other from --lba (at least 1)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}

/// The flags of `iscsi read`.
#[derive(clap::Args, Clone, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    /// The shared flags.
    pub io: IoArgs,
    #[command(flatten)]
    /// `--blocks`, `--out`.
    pub to: crate::args::ReadTo,
}

/// The flags of `iscsi write`.
#[derive(clap::Args, Clone, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    /// The shared flags.
    pub io: IoArgs,
    #[command(flatten)]
    /// `--in`.
    pub from: crate::args::WriteFrom,
}

/// The flags of `iscsi verify`.
#[derive(clap::Args, Clone, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    /// Where to log in.
    pub login: Login,
    #[command(flatten)]
    /// `--digests`.
    pub digests: DigestsArg,
    /// First logical block
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub lba: u64,
    /// Bytes per command, a multiple of the block size (4k, 128k, 1M ...)
    #[arg(long, visible_aliases = ["len", "size"], value_name = "BYTES", default_value = "64k", value_parser = crate::args::size)]
    pub bs: usize,
    /// Commands per phase (at least 1)
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Commands outstanding at once (1 to 1024)
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub qd: u16,
    /// Write and read back N times, a new pattern each time (at least 1)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub passes: u64,
}

/// The flags of `iscsi perf`.
#[derive(clap::Args, Clone, Debug)]
pub struct IscsiPerfArgs {
    #[command(flatten)]
    /// Where to log in.
    pub login: Login,
    #[command(flatten)]
    /// The shared perf flags.
    pub perf: crate::perf::PerfArgs,
}

fn url_arg(url: &str) -> Result<String, String> {
    check_url(url).map(|_| url.to_string())
}

/// Parses an `iscsi://` URL; the error quotes it.
///
/// # Errors
///
/// A message quoting the URL and saying what is wrong.
pub fn check_url(url: &str) -> Result<IscsiUrl, String> {
    const FORM: &str = "iscsi://[USER@]HOST[:PORT]/IQN/LUN";
    if !url.starts_with("iscsi://") {
        return Err(format!(
            "not an iscsi:// URL: {url:?} (it must start with iscsi://; expected {FORM})"
        ));
    }
    IscsiUrl::parse(url).map_err(|e| {
        format!(
            "not an iscsi:// URL: {url:?} ({}; expected {FORM})",
            e.reason
        )
    })
}

/// Recovery settings from the command line; `None` keeps the library's default.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
#[command(next_help_heading = "Recovery (defaults as open-iscsi's; seconds, fractions allowed)")]
pub struct Recovery {
    /// NOP-Out ping after S idle (default 5; 0: none)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    noop_interval: Option<Duration>,
    /// An unanswered ping ends the connection after S (default 5)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    noop_timeout: Option<Duration>,
    /// A command outstanding S starts the connection's recovery ladder (default 30; 0: none)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    task_timeout: Option<Duration>,
    /// Reinstate the session for at most S after losing the connection, then fail every
    /// command (default 120)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    replacement_timeout: Option<Duration>,
    /// Between reinstatement attempts (default 3)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    reconnect_delay: Option<Duration>,
    /// One reinstatement attempt's limit (default 15)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    login_timeout: Option<Duration>,
}

impl Recovery {
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
    cmd: &'static str,
    url: Option<String>,
    lba: u64,
    bs: usize,
    count: usize,
    blocks: Option<u64>,
    qd: usize,
    passes: usize,
    digests: Digests,
    input: Option<String>,
    output: Option<String>,
    initiator: String,
    chap_secret_file: Option<String>,
    recovery: Recovery,
}

impl Args {
    fn new(cmd: &'static str, login: &Login, digests: DigestsArg, lba: u64, bs: usize) -> Self {
        Self {
            cmd,
            url: login.url.clone(),
            lba,
            bs,
            count: 1,
            blocks: None,
            qd: 16,
            passes: 1,
            digests: digests.get(),
            input: None,
            output: None,
            initiator: login.initiator.clone(),
            chap_secret_file: login.chap_secret_file.clone(),
            recovery: login.recovery,
        }
    }

    fn from_cmd(cmd: &IscsiCmd) -> Option<Self> {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Some(match cmd {
            IscsiCmd::Read(r) => Self {
                count: n(r.io.count),
                blocks: r.to.blocks,
                output: r.to.out.clone(),
                ..Self::new("read", &r.io.login, r.io.digests, r.io.lba, r.io.bs)
            },
            IscsiCmd::Write(w) => Self {
                count: n(w.io.count),
                input: w.from.input.clone(),
                ..Self::new("write", &w.io.login, w.io.digests, w.io.lba, w.io.bs)
            },
            IscsiCmd::Verify(v) => Self {
                count: n(v.count),
                qd: usize::from(v.qd),
                passes: n(v.passes),
                ..Self::new("verify", &v.login, v.digests, v.lba, v.bs)
            },
            IscsiCmd::Perf(_)
            | IscsiCmd::Discover(_)
            | IscsiCmd::ReportLuns(_)
            | IscsiCmd::Inquiry(_)
            | IscsiCmd::Readcap(_) => return None,
        })
    }

    /// Whether the messages go to standard error (the data goes to standard output).
    fn quiet_stdout(&self) -> bool {
        self.output.as_deref() == Some("-")
    }
}

/// Prints a message line to standard output, or to standard error when standard output
/// carries data.
fn say(to_stderr: bool, line: &str) {
    if to_stderr {
        eprintln!("{line}");
    } else {
        crate::outln!("{line}");
    }
}

/// Runs a parsed `ulp-ddp iscsi` command line.
pub fn main(cmd: &IscsiCmd) -> ExitCode {
    if let IscsiCmd::Perf(p) = cmd {
        let spec = p.perf.spec();
        let secret = match chap_secret(p.login.chap_secret_file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ulp-ddp iscsi perf: {e}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = perf_as(
            &spec,
            p.login.url.as_deref(),
            &p.login.initiator,
            &p.login.recovery,
            secret,
        );
        return crate::perf::finish("ulp-ddp iscsi perf", spec.json, outcome);
    }
    use crate::iscsi_info::InfoCommand;
    let info = match cmd {
        IscsiCmd::Discover(i) => Some((InfoCommand::Discover, i)),
        IscsiCmd::ReportLuns(i) => Some((InfoCommand::ReportLuns, i)),
        IscsiCmd::Inquiry(i) => Some((InfoCommand::Inquiry, i)),
        IscsiCmd::Readcap(i) => Some((InfoCommand::ReadCap, i)),
        _ => None,
    };
    if let Some((what, i)) = info {
        let text = chap_secret(i.login.chap_secret_file.as_deref()).and_then(|secret| {
            crate::iscsi_info::run(
                what,
                i.login.url.as_deref(),
                &i.login.initiator,
                i.digests.get(),
                &i.login.recovery,
                secret,
            )
        });
        return match text {
            Ok(text) => {
                crate::out!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ulp-ddp iscsi {}: {e}", what.name());
                ExitCode::FAILURE
            }
        };
    }
    let Some(a) = Args::from_cmd(cmd) else {
        return ExitCode::FAILURE;
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ulp-ddp iscsi {}: {e}", a.cmd);
            ExitCode::FAILURE
        }
    }
}

/// The CHAP secret from `--chap-secret-file` or [`CHAP_SECRET_ENV`] (`None`: neither given).
fn chap_secret(file: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    if let Some(f) = file {
        let mut s = std::fs::read(f).map_err(|e| format!("--chap-secret-file {f}: {e}"))?;
        while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            s.pop();
        }
        return Ok(Some(s));
    }
    Ok(std::env::var_os(CHAP_SECRET_ENV).map(|v| v.into_encoded_bytes()))
}

/// Where `open` reports the login.
#[derive(Clone, Copy)]
pub(crate) enum Verbose {
    Silent,
    Stdout,
    Stderr,
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
    digests: Digests,
    queue_depth: u32,
    recovery: &Recovery,
    secret: Option<Vec<u8>>,
    verbose: Verbose,
) -> Result<Opened, Box<dyn std::error::Error>> {
    let info = |line: String| match verbose {
        Verbose::Silent => {}
        Verbose::Stdout => say(false, &line),
        Verbose::Stderr => say(true, &line),
    };
    // The embedded target lives until the end of the run.
    let (target, url) = match url {
        Some(u) => (None, check_url(u)?),
        None => {
            let t = Target::start(TargetConfig::default())
                .map_err(|e| format!("embedded target: {e}"))?;
            info(format!("embedded target: {}", t.url()));
            let url = IscsiUrl::parse(&t.url())?;
            (Some(t), url)
        }
    };
    let mut config = ConnectionConfig::normal(initiator, &url.target);
    config.queue_depth = queue_depth.max(config.queue_depth);
    if digests.header {
        config.wanted.header_digest = DigestPref::Require;
    }
    if digests.data {
        config.wanted.data_digest = DigestPref::Require;
    }
    if url.password.is_some() {
        eprintln!(
            "warning: the CHAP secret in the URL is visible to every user of this machine (ps); \
             put it in {CHAP_SECRET_ENV} or a file (--chap-secret-file) instead"
        );
    }
    if let Some(user) = &url.user {
        let secret = secret
            .or_else(|| url.password.clone().map(String::into_bytes))
            .ok_or_else(|| {
                format!(
                    "CHAP user {user:?} given but no secret: set {CHAP_SECRET_ENV} or use --chap-secret-file"
                )
            })?;
        config.chap = Some(ChapCredentials {
            user: user.clone(),
            secret,
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
    {
        info(format!(
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
        ));
    }
    let lun = Lun::single_level(u8::try_from(url.lun).map_err(|_| "LUN above 255")?);
    c.test_unit_ready(lun)?;
    let cap = c.read_capacity(lun)?;
    info(format!(
        "capacity: {} blocks of {} bytes ({} MiB)",
        cap.blocks(),
        cap.block_len,
        cap.bytes() >> 20
    ));
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
    let secret = chap_secret(a.chap_secret_file.as_deref())?;
    let Opened {
        target,
        client: mut c,
        lun,
        cap,
        name,
    } = open(
        a.url.as_deref(),
        &a.initiator,
        a.digests,
        u32::try_from(a.qd).unwrap_or(1024),
        &a.recovery,
        secret,
        if a.quiet_stdout() {
            Verbose::Stderr
        } else {
            Verbose::Stdout
        },
    )?;
    let bl = cap.block_len.max(1) as usize;
    if !a.bs.is_multiple_of(bl) {
        return Err(format!(
            "--bs {}: not a multiple of the LUN's block size {bl} (allowed: {bl}, {}, {} ...)",
            a.bs,
            2 * bl,
            4 * bl
        )
        .into());
    }
    if target.is_none() && a.lba == 0 && a.cmd != "read" {
        eprintln!(
            "warning: writing from LBA 0 of {name}: this overwrites the start of the LUN (a partition table, a file system); use --lba to write elsewhere"
        );
    }
    let result = match a.cmd {
        "verify" => verify(&mut c, lun, cap, a),
        _ => read_or_write(&mut c, lun, cap, a),
    };
    print_events(&mut c);
    result?;
    let s = c.connection().engine().stats();
    say(
        a.quiet_stdout(),
        &format!(
            "engine: {} PDUs, {} data PDUs, {} bytes read in place, {} bytes copied, {} digests computed, {} failed",
            s.pdus,
            s.data_pdus,
            s.bytes_read_in_place,
            s.bytes_copied,
            s.digests_computed,
            s.digests_failed
        ),
    );
    if c.reinstatements() > 0 {
        say(
            a.quiet_stdout(),
            &format!("session reinstated {} time(s)", c.reinstatements()),
        );
    }
    let r = c.logout();
    print_events(&mut c);
    r?;
    Ok(())
}

/// Reads or writes `a.count` commands of `a.bs` bytes (or `a.blocks` blocks, or the input)
/// from `a.lba`, one after the other.
fn read_or_write(
    c: &mut Session<SwBackend>,
    lun: Lun,
    cap: scsi::Capacity,
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let bl = cap.block_len.max(1) as u64;
    let per_cmd = a.bs as u64 / bl;
    let fits = |blocks: u64| -> Result<(), String> {
        if a.lba
            .checked_add(blocks)
            .is_none_or(|end| end > cap.blocks())
        {
            return Err(format!(
                "{blocks} blocks from LBA {} do not fit in the LUN's {} blocks",
                a.lba,
                cap.blocks()
            ));
        }
        Ok(())
    };
    match a.cmd {
        "read" => {
            let total = a.blocks.unwrap_or(a.count as u64 * per_cmd);
            fits(total)?;
            let mut out: Option<Box<dyn std::io::Write>> = match a.output.as_deref() {
                None => None,
                Some("-") => Some(Box::new(std::io::stdout().lock())),
                Some(f) => Some(Box::new(std::io::BufWriter::new(
                    std::fs::File::create(f).map_err(|e| format!("--out {f}: {e}"))?,
                ))),
            };
            let name = a.output.as_deref().unwrap_or("-");
            let mut crc = ulp_ddp_core::digest::Crc32c::new();
            let mut done = 0u64;
            while done < total {
                let n = per_cmd.min(total - done);
                let data = c
                    .read(lun, a.lba + done, SgBuffer::zeroed((n * bl) as usize))?
                    .into_vec();
                crc.update(&data);
                if let Some(o) = out.as_mut() {
                    crate::out::write_all(o.as_mut(), &data, name)?;
                }
                done += n;
            }
            if let Some(o) = out.as_mut() {
                match o.flush() {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        crate::out::quiet_exit()
                    }
                    r => r.map_err(|e| format!("write {name}: {e}"))?,
                }
            }
            say(
                a.quiet_stdout(),
                &format!(
                    "read {} bytes at LBA {}: crc32c {:#010x}",
                    total * bl,
                    a.lba,
                    crc.value()
                ),
            );
        }
        "write" => {
            let mut data = match a.input.as_deref() {
                Some("-") => {
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v)
                        .map_err(|e| format!("--in -: {e}"))?;
                    v
                }
                Some(f) => std::fs::read(f).map_err(|e| format!("--in {f}: {e}"))?,
                None => (0..a.bs * a.count)
                    .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                    .collect(),
            };
            if data.is_empty() {
                return Err("--in: the input is empty".into());
            }
            if !(data.len() as u64).is_multiple_of(bl) {
                eprintln!(
                    "write: the input ends inside a block: its last {} bytes are padded with zeros to {bl}",
                    data.len() as u64 % bl
                );
            }
            data.resize((data.len() as u64).div_ceil(bl) as usize * bl as usize, 0);
            fits(data.len() as u64 / bl)?;
            for (i, chunk) in data.chunks(a.bs).enumerate() {
                let lba = a.lba + i as u64 * per_cmd;
                c.write(lun, lba, SgBuffer::from_vec(chunk.to_vec()))?;
                print_events(c);
                let back = c.read(lun, lba, SgBuffer::zeroed(chunk.len()))?;
                if back.into_vec() != chunk {
                    return Err(
                        format!("read-back at LBA {lba} differs from what was written").into(),
                    );
                }
            }
            say(
                a.quiet_stdout(),
                &format!(
                    "wrote and read back {} bytes at LBA {}: identical",
                    data.len(),
                    a.lba
                ),
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
        crate::outln!(
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
    crate::outln!(
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
        None,
    )
}

fn perf_as(
    spec: &PerfSpec,
    url: Option<&str>,
    initiator: &str,
    recovery: &Recovery,
    secret: Option<Vec<u8>>,
) -> Result<PerfResult, String> {
    let qd = u32::try_from(spec.qd).unwrap_or(u32::MAX);
    let Opened {
        target,
        client: mut c,
        lun,
        cap,
        name,
    } = open(
        url,
        initiator,
        spec.digests,
        qd,
        recovery,
        secret,
        Verbose::Silent,
    )
    .map_err(|e| e.to_string())?;
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
                digests: if digests {
                    Digests::BOTH
                } else {
                    Digests::NONE
                },
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
