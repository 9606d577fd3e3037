//! `ulp-ddp nvme read|write|verify|perf [nvme-tcp://HOST:PORT/NQN/NSID] [options]`: the NVMe/TCP host
//! on a real target, or on the embedded one when no URL is given.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{SgBuffer, Stats};
use ulp_nvme_tcp::blocking::{CommandId, Controller, Io, Options};
use ulp_nvme_tcp::psk::{ConfiguredPsk, Derivation, IdentityVersion, TlsPsk};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig, TargetTls};

use crate::perf::{EMBEDDED_BYTES, PerfIo, PerfResult, PerfSpec, closed_loop, stats_delta};

/// The NVMe/TCP URL of a namespace: host (an IPv6 address in brackets), port, subsystem NQN
/// and namespace ID.
pub type NvmeUrl = ulp_nvme_tcp::NvmeTcpUrl;

/// The write patterns, documented in `--help`.
const PATTERNS: &str = "\
Data written without --in (write, verify): the command at LBA L gets byte i = (i * 0x9E37 + L)
mod 256 (i from 0 in the command), so every command's data differs and a read-back can be
checked; perf writes use the same rule with the slot number for L.
Writing to a real target (a URL) at LBA 0 prints a warning: it overwrites the start of the
namespace (a partition table, a file system's superblock).";

/// `ulp-ddp nvme ...`: the NVMe/TCP host on a real target, or on an embedded one (a 64 MiB RAM
/// namespace on 127.0.0.1, filled before a read run) when no URL is given.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum NvmeCmd {
    /// Read --count commands of --bs bytes from --lba (--out FILE or - to save the data)
    #[command(args_override_self = true, after_help = PATTERNS)]
    Read(ReadArgs),
    /// Write --count commands of --bs bytes from --lba: a pattern, or --in FILE (- for stdin)
    #[command(args_override_self = true, after_help = PATTERNS)]
    Write(WriteArgs),
    /// Write --count commands of --bs bytes (a pattern) from --lba, read them back and compare
    #[command(args_override_self = true, after_help = PATTERNS)]
    Verify(IoArgs),
    /// The shared perf mode: reads (or writes with --write) for --seconds or --count commands
    #[command(args_override_self = true)]
    Perf(NvmePerfArgs),
    /// Read a discovery controller's log and list its entries, as nvme discover does
    #[command(args_override_self = true)]
    Discover(DiscoverArgs),
    /// Identify Controller, printed as nvme id-ctrl prints it
    #[command(args_override_self = true)]
    IdCtrl(InfoArgs),
    /// The active namespace list (Identify CNS 02h), printed as nvme list-ns prints it
    #[command(args_override_self = true)]
    ListNs(InfoArgs),
}

/// The flags of `nvme id-ctrl` and `list-ns`.
#[derive(clap::Args, Clone, Debug)]
pub struct InfoArgs {
    /// nvme-tcp://HOST:PORT/NQN/NSID (without :PORT, 4420); without it, the embedded target
    #[arg(value_name = "URL", value_parser = url_arg)]
    pub url: Option<NvmeUrl>,
    #[command(flatten)]
    /// `--digests`.
    pub digests: crate::args::DigestsArg,
    #[command(flatten)]
    /// Recovery settings.
    pub recovery: Recovery,
}

/// The flags of `nvme read`, `write` and `verify`.
#[derive(clap::Args, Clone, Debug)]
pub struct IoArgs {
    /// The subsystem's URL (see the help text).
    #[arg(
        value_name = "URL",
        value_parser = url_arg,
        help = "nvme-tcp://HOST[:PORT]/NQN/NSID (port 4420 unless given; IPv6 hosts in brackets); without it, the embedded target"
    )]
    pub url: Option<NvmeUrl>,
    /// Bytes per command, a multiple of the block size (4k, 128k, 1M ...)
    #[arg(long, visible_aliases = ["size", "len"], value_name = "BYTES", default_value = "128k", value_parser = crate::args::size)]
    pub bs: usize,
    /// Commands per phase (at least 1)
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// First logical block (nvme-cli's --start-block)
    #[arg(
        long,
        visible_alias = "start-block",
        value_name = "N",
        default_value_t = 0
    )]
    pub lba: u64,
    /// Commands outstanding at once (1 to 1024)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub qd: u16,
    #[command(flatten)]
    /// `--digests`.
    pub digests: crate::args::DigestsArg,
    /// I/O queues, each its own TCP connection (1 to 64)
    #[arg(long, visible_alias = "nr-io-queues", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: u16,
    #[command(flatten)]
    /// Recovery settings.
    pub recovery: Recovery,
    #[command(flatten)]
    /// `--tls` and its key.
    pub tls: TlsArgs,
}

/// The flags of `nvme read`.
#[derive(clap::Args, Clone, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    /// The shared flags.
    pub io: IoArgs,
    #[command(flatten)]
    /// `--blocks`, `--out`.
    pub to: crate::args::ReadTo,
}

/// The flags of `nvme write`.
#[derive(clap::Args, Clone, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    /// The shared flags.
    pub io: IoArgs,
    #[command(flatten)]
    /// `--in`.
    pub from: crate::args::WriteFrom,
}

/// The flags of `nvme discover`.
#[derive(clap::Args, Clone, Debug)]
pub struct DiscoverArgs {
    /// The discovery controller's URL (see the help text).
    #[arg(
        value_name = "URL",
        value_parser = discovery_url_arg,
        help = "nvme-tcp://HOST[:PORT] of the discovery controller (port 4420 unless given); without it, the embedded target"
    )]
    pub url: Option<NvmeUrl>,
    #[command(flatten)]
    /// `--digests`.
    pub digests: crate::args::DigestsArg,
    #[command(flatten)]
    /// Recovery settings.
    pub recovery: Recovery,
    #[command(flatten)]
    /// `--tls` and its key (a discovery controller may require TLS; the PSK identity names
    /// the discovery NQN).
    pub tls: TlsArgs,
}

/// The flags of `nvme perf`.
#[derive(clap::Args, Clone, Debug)]
pub struct NvmePerfArgs {
    /// The subsystem's URL (see the help text).
    #[arg(
        value_name = "URL",
        value_parser = url_arg,
        help = "nvme-tcp://HOST[:PORT]/NQN/NSID; without it, the embedded target"
    )]
    pub url: Option<NvmeUrl>,
    /// I/O queues, each its own TCP connection (1 to 64)
    #[arg(long, visible_alias = "nr-io-queues", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: u16,
    #[command(flatten)]
    /// `--tls` and its key.
    pub tls: TlsArgs,
    #[command(flatten)]
    /// The shared perf flags.
    pub perf: crate::perf::PerfArgs,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `read`, `write`, `verify` or `discover`.
    pub op: String,
    /// Host, port, subsystem NQN and namespace, or `None` for the embedded target.
    pub url: Option<NvmeUrl>,
    /// Bytes per command.
    pub size: usize,
    /// Commands per phase.
    pub count: usize,
    /// First logical block.
    pub lba: u64,
    /// `read --blocks`: logical blocks to read instead of `count` commands.
    pub blocks: Option<u64>,
    /// `read --out`: where the data goes (`-`: standard output).
    pub output: Option<String>,
    /// `write --in`: where the data comes from (`-`: standard input).
    pub input: Option<String>,
    /// Queue depth.
    pub qd: u16,
    /// Header and data digests asked for.
    pub digests: Digests,
    /// Recovery settings given on the command line (`None`: the library's default).
    pub recovery: Recovery,
    /// I/O queues.
    pub queues: u16,
    /// `--tls` and its key.
    pub tls: TlsArgs,
}

impl Spec {
    fn from_io(op: &str, a: &IoArgs) -> Self {
        Self {
            op: op.to_string(),
            url: a.url.clone(),
            size: a.bs,
            count: usize::try_from(a.count).unwrap_or(usize::MAX),
            lba: a.lba,
            blocks: None,
            output: None,
            input: None,
            qd: a.qd,
            digests: a.digests.get(),
            recovery: a.recovery,
            queues: a.queues,
            tls: a.tls.clone(),
        }
    }

    /// The spec of a parsed `nvme` command line (`None` for `perf`).
    pub fn from_cmd(cmd: &NvmeCmd) -> Option<Self> {
        Some(match cmd {
            NvmeCmd::Read(r) => Self {
                blocks: r.to.blocks,
                output: r.to.out.clone(),
                ..Self::from_io("read", &r.io)
            },
            NvmeCmd::Write(w) => Self {
                input: w.from.input.clone(),
                ..Self::from_io("write", &w.io)
            },
            NvmeCmd::Verify(v) => Self::from_io("verify", v),
            NvmeCmd::Discover(d) => Self {
                url: d.url.clone(),
                digests: d.digests.get(),
                recovery: d.recovery,
                tls: d.tls.clone(),
                ..Self::from_io(
                    "discover",
                    &IoArgs {
                        url: None,
                        bs: 4096,
                        count: 1,
                        lba: 0,
                        qd: 1,
                        digests: crate::args::DigestsArg::default(),
                        queues: 1,
                        recovery: Recovery::default(),
                        tls: TlsArgs::default(),
                    },
                )
            },
            NvmeCmd::Perf(_) | NvmeCmd::IdCtrl(_) | NvmeCmd::ListNs(_) => return None,
        })
    }
}

/// Recovery settings from the command line; `None` keeps [`Options::new`]'s default.
#[derive(clap::Args, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[command(
    next_help_heading = "Recovery (defaults as Linux's nvme-tcp host; seconds, fractions allowed)"
)]
pub struct Recovery {
    /// KATO given to Connect, Keep Alive every S/2 (default 5; 0: none)
    #[arg(long = "keep-alive-tmo", value_name = "S", value_parser = crate::args::seconds)]
    pub kato: Option<Duration>,
    /// A command outstanding this long is aborted (default 30)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    pub io_timeout: Option<Duration>,
    /// Wait before each reconnect after losing the controller (default 10)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    pub reconnect_delay: Option<Duration>,
    /// Give up reconnecting, failing every command, after S (default 600)
    #[arg(long, value_name = "S", value_parser = crate::args::seconds)]
    pub ctrl_loss_tmo: Option<Duration>,
}

impl Recovery {
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

/// The environment variable that may hold the configured PSK (instead of `--tls-key-file`).
pub const TLS_KEY_ENV: &str = "ULP_DDP_TLS_KEY";

/// NVMe/TCP's secure channel from the command line: TLS 1.3 with a PSK derived from a
/// configured key in the interchange format, read from a file or the environment (never from
/// the command line, where other users see it).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "TLS (NVMe/TCP secure channel, TP 8011)")]
pub struct TlsArgs {
    /// TLS 1.3 with a PSK on every queue (key from --tls-key-file or ULP_DDP_TLS_KEY); the embedded target then serves TLS only
    #[arg(long)]
    pub tls: bool,
    /// File holding the configured PSK, NVMeTLSkey-1:01:BASE64: (as `nvme gen-tls-key` prints it)
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// PSK identity: v0 (NVMe0R0H HOSTNQN SUBNQN, nvme-cli's default) or v1 (with the PSK digest)
    #[arg(long, value_enum, value_name = "VERSION", default_value_t = IdentityArg::V0)]
    pub tls_identity: IdentityArg,
    /// Host NQN (the TLS identity names it; default: the library's)
    #[arg(long, value_name = "NQN")]
    pub hostnqn: Option<String>,
    /// A configured PSK the program supplies (`perf-compare --tls` generates one), used
    /// instead of the file and the environment; never from the command line.
    #[arg(skip)]
    pub key: Option<ConfiguredPsk>,
}

/// `--tls-identity`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityArg {
    /// `NVMe0R0H <hostnqn> <subnqn>`.
    #[default]
    V0,
    /// `NVMe1R0H <hostnqn> <subnqn> <PSK digest>`.
    V1,
}

impl TlsArgs {
    /// The host NQN to use.
    fn hostnqn(&self) -> String {
        self.hostnqn
            .clone()
            .unwrap_or_else(|| Options::new("").hostnqn)
    }

    /// The TLS PSK for `subnqn` (derived as Linux and nvme-cli 2.16 on do), `None` without
    /// `--tls`.
    fn psk(&self, subnqn: &str) -> Result<Option<TlsPsk>, String> {
        if !self.tls {
            return Ok(None);
        }
        let key = match (&self.key, &self.tls_key_file) {
            (Some(key), _) => key.clone(),
            (None, file) => {
                let text = match file {
                    Some(f) => std::fs::read_to_string(f)
                        .map_err(|e| format!("--tls-key-file {}: {e}", f.display()))?,
                    None => std::env::var(TLS_KEY_ENV).map_err(|_| {
                        format!(
                            "--tls needs the configured PSK: --tls-key-file FILE or the \
                             environment variable {TLS_KEY_ENV} (never on the command line)"
                        )
                    })?,
                };
                ConfiguredPsk::parse(text.trim())
                    .map_err(|e| format!("the configured TLS PSK: {e}"))?
            }
        };
        let version = match self.tls_identity {
            IdentityArg::V0 => IdentityVersion::V0,
            IdentityArg::V1 => IdentityVersion::V1,
        };
        key.derive(&self.hostnqn(), subnqn, version, Derivation::Rfc8446)
            .map(Some)
            .map_err(|e| format!("the TLS PSK: {e}"))
    }
}

fn url_arg(url: &str) -> Result<NvmeUrl, String> {
    parse_url(url)
}

fn discovery_url_arg(url: &str) -> Result<NvmeUrl, String> {
    parse_discovery_url(url)
}

fn url_error(e: &ulp_nvme_tcp::UrlError, form: &str) -> String {
    format!(
        "not an nvme-tcp:// URL: {:?} ({}; expected {form})",
        e.url, e.reason
    )
}

/// Parses `nvme-tcp://HOST[:PORT]/NQN/NSID` (port 4420 unless given; `[v6 address]`).
///
/// # Errors
///
/// A message quoting the URL and saying what is wrong.
pub fn parse_url(url: &str) -> Result<NvmeUrl, String> {
    NvmeUrl::parse(url).map_err(|e| url_error(&e, "nvme-tcp://HOST[:PORT]/NQN/NSID"))
}

/// Parses `nvme-tcp://HOST[:PORT][/]` (a discovery controller; port 4420 by default), with the
/// discovery NQN.
///
/// # Errors
///
/// A message quoting the URL and saying what is wrong.
pub fn parse_discovery_url(url: &str) -> Result<NvmeUrl, String> {
    NvmeUrl::parse_discovery(url).map_err(|e| url_error(&e, "nvme-tcp://HOST[:PORT]"))
}

/// Parses the subcommand's arguments (after `nvme`), as the command line does.
///
/// # Errors
///
/// clap's message (usage included), or "perf" for a perf command line.
pub fn parse(args: &[String]) -> Result<Spec, String> {
    let mut v = vec!["nvme".to_string()];
    v.extend_from_slice(args);
    match crate::cli::Cli::try_parse_args(&v).map_err(|e| e.to_string())? {
        Some(crate::cli::Cmd::Nvme { cmd }) => Spec::from_cmd(&cmd).ok_or_else(|| "perf".into()),
        _ => Err("not an nvme command line".into()),
    }
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

/// Where a phase's data comes from or goes: `--in` for writes, `--out` for reads.
#[derive(Default)]
pub struct DataIo {
    /// Data to write (`write --in`).
    pub input: Option<Box<dyn std::io::Read>>,
    /// Where read data goes (`read --out`), in LBA order.
    pub output: Option<Box<dyn std::io::Write>>,
    /// Name of the output, for messages.
    pub output_name: String,
}

/// Reads up to `len` bytes (fewer only at the end of the input).
fn read_chunk(r: &mut dyn std::io::Read, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(len);
    r.take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read --in: {e}"))?;
    Ok(buf)
}

/// Which commands a phase runs: a region from `--lba` (`--out`, `--blocks`), or `count`
/// commands from `--lba`, wrapping around the namespace as before `--lba` existed.
struct Plan {
    lba: u64,
    per_cmd: u64,
    /// Region: blocks to cover; `None`: `count` commands, wrapping after `slots`.
    region: Option<u64>,
    slots: u64,
    commands: usize,
}

impl Plan {
    fn new(spec: &Spec, block: u64, nsze: u64, data: bool) -> Result<Self, String> {
        let per_cmd = spec.size as u64 / block;
        if spec.lba >= nsze {
            return Err(format!(
                "--lba {}: beyond the namespace (0 to {})",
                spec.lba,
                nsze - 1
            ));
        }
        let left = nsze - spec.lba;
        if let Some(total) = spec
            .blocks
            .or_else(|| data.then(|| spec.count as u64 * per_cmd))
        {
            if total > left {
                return Err(format!(
                    "{total} blocks from LBA {} do not fit in the namespace's {nsze} blocks",
                    spec.lba
                ));
            }
            return Ok(Self {
                lba: spec.lba,
                per_cmd,
                region: Some(total),
                slots: 0,
                commands: usize::try_from(total.div_ceil(per_cmd)).unwrap_or(usize::MAX),
            });
        }
        if per_cmd > left {
            return Err(format!(
                "--bs {}: a command from LBA {} does not fit in the namespace's {nsze} blocks",
                spec.size, spec.lba
            ));
        }
        Ok(Self {
            lba: spec.lba,
            per_cmd,
            region: None,
            slots: (left / per_cmd).max(1),
            commands: spec.count,
        })
    }

    /// The `i`th command's first block and block count.
    fn command(&self, i: usize) -> (u64, u64) {
        let i = i as u64;
        match self.region {
            Some(total) => (
                self.lba + i * self.per_cmd,
                self.per_cmd.min(total - i * self.per_cmd),
            ),
            None => (self.lba + (i % self.slots) * self.per_cmd, self.per_cmd),
        }
    }
}

fn phase(
    c: &mut Controller<SwBackend>,
    spec: &Spec,
    write: bool,
    verify: bool,
    data: &mut DataIo,
) -> Result<PhaseResult, String> {
    let ns = c.namespace();
    let block = u64::from(ns.block_size.max(1));
    let op = if write { "write" } else { "read" };
    let from_input = write && data.input.is_some();
    let plan = Plan::new(spec, block, ns.nsze, data.output.is_some())?;
    let commands = if from_input {
        usize::MAX
    } else {
        plan.commands
    };
    let bar = crate::progress::bar(if from_input { 0 } else { commands as u64 }, op);
    if !crate::progress::visible() {
        let what = if from_input {
            format!(
                "{} in commands of up to {} B",
                spec.input.as_deref().unwrap_or("-"),
                spec.size
            )
        } else {
            format!("{commands} commands of {} B", spec.size)
        };
        eprintln!("{op} {what} from LBA {} at QD {}", spec.lba, spec.qd);
    }
    let start = Instant::now();
    let (mut next, mut done, mut errors, mut mismatches) = (0usize, 0usize, 0usize, 0usize);
    let mut bytes = 0u64;
    let mut input_lba = spec.lba;
    let mut eof = false;
    // Reads for --out, completed out of order, written in order.
    let mut pending: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    let mut out_lba = spec.lba;
    loop {
        while !eof && next < commands && c.outstanding() < usize::from(spec.qd) {
            let io = if let Some(input) = data.input.as_mut().filter(|_| write) {
                let mut chunk = read_chunk(input.as_mut(), spec.size)?;
                if chunk.is_empty() {
                    eof = true;
                    break;
                }
                let blocks = (chunk.len() as u64).div_ceil(block);
                if input_lba + blocks > ns.nsze {
                    return Err(format!(
                        "--in {}: the data from LBA {} does not fit in the namespace's {} blocks",
                        spec.input.as_deref().unwrap_or("-"),
                        spec.lba,
                        ns.nsze
                    ));
                }
                if !(chunk.len() as u64).is_multiple_of(block) {
                    eprintln!(
                        "{op}: the input ends inside a block: its last {} bytes are padded with zeros to {block}",
                        chunk.len() as u64 % block
                    );
                    chunk.resize((blocks * block) as usize, 0);
                }
                let slba = input_lba;
                input_lba += blocks;
                Io::Write {
                    slba,
                    data: SgBuffer::from_vec(chunk),
                }
            } else {
                let (slba, blocks) = plan.command(next);
                let len = (blocks * block) as usize;
                if write {
                    Io::Write {
                        slba,
                        data: SgBuffer::from_vec(pattern(len, slba)),
                    }
                } else {
                    Io::Read {
                        slba,
                        buffer: SgBuffer::zeroed(len),
                    }
                }
            };
            c.submit(io).map_err(|e| e.to_string())?;
            next += 1;
        }
        if c.outstanding() == 0 {
            break;
        }
        let completion = c.wait(None).map_err(|e| e.to_string())?;
        for event in c.take_events() {
            bar.suspend(|| eprintln!("{event}"));
        }
        done += 1;
        bar.inc(1);
        if let Some(msg) = completion.error_message() {
            errors += 1;
            bar.suspend(|| {
                if errors <= 10 {
                    eprintln!("{msg}");
                } else if errors == 11 {
                    eprintln!("(further failed commands are counted, not listed)");
                }
            });
            if data.output.is_some() {
                return Err(format!(
                    "the read at LBA {} failed; {} is incomplete",
                    completion.slba, data.output_name
                ));
            }
            continue;
        }
        bytes += completion.len;
        let slba = completion.slba;
        if let Some(buf) = completion.buffer {
            let v = buf.into_vec();
            if verify && v != pattern(v.len(), slba) {
                mismatches += 1;
            }
            if let Some(out) = data.output.as_mut() {
                pending.insert(slba, v);
                while let Some(chunk) = pending.remove(&out_lba) {
                    out_lba += chunk.len() as u64 / block;
                    crate::out::write_all(out.as_mut(), &chunk, &data.output_name)?;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{:.1} MiB/s",
            bytes as f64 / secs / (1 << 20) as f64
        ));
    }
    bar.finish_and_clear();
    if let Some(out) = data.output.as_mut() {
        match out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => crate::out::quiet_exit(),
            r => r.map_err(|e| format!("write {}: {e}", data.output_name))?,
        }
    }
    Ok(PhaseResult {
        op,
        commands: done - errors,
        bytes,
        elapsed: start.elapsed(),
        errors,
        mismatches,
    })
}

/// Opens `--in` and `--out` (`-`: standard input, standard output).
fn data_io(spec: &Spec) -> Result<DataIo, String> {
    let input: Option<Box<dyn std::io::Read>> = match spec.input.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdin().lock())),
        Some(f) => Some(Box::new(std::io::BufReader::new(
            std::fs::File::open(f).map_err(|e| format!("--in {f}: {e}"))?,
        ))),
    };
    let output: Option<Box<dyn std::io::Write>> = match spec.output.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout().lock())),
        Some(f) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).map_err(|e| format!("--out {f}: {e}"))?,
        ))),
    };
    Ok(DataIo {
        input,
        output,
        output_name: match spec.output.as_deref() {
            Some("-") => "standard output".into(),
            Some(f) => f.to_string(),
            None => String::new(),
        },
    })
}

/// Runs `spec`; returns the phases and the I/O queue's counters.
///
/// # Errors
///
/// Connection or set-up failures, as a message.
pub fn run(spec: &Spec) -> Result<(Vec<PhaseResult>, Stats, String), String> {
    let (embedded, mut c, target) = open(
        spec.url.as_ref(),
        spec.qd,
        spec.digests,
        &spec.recovery,
        spec.queues,
        &spec.tls,
    )?;
    let ns = c.namespace();
    if !(spec.size as u64).is_multiple_of(u64::from(ns.block_size.max(1))) {
        return Err(format!(
            "--bs {}: not a multiple of the namespace's block size {} (allowed: {0}, {}, {} ...)",
            spec.size,
            ns.block_size,
            2 * ns.block_size,
            4 * ns.block_size
        ));
    }
    if embedded.is_none() && spec.lba == 0 && spec.op != "read" {
        eprintln!(
            "warning: writing from LBA 0 of {target}: this overwrites the start of the namespace (a partition table, a file system); use --lba to write elsewhere"
        );
    }
    let mut data = data_io(spec)?;
    let mut phases = Vec::new();
    match spec.op.as_str() {
        "read" => phases.push(phase(&mut c, spec, false, false, &mut data)?),
        "write" => phases.push(phase(&mut c, spec, true, false, &mut data)?),
        _ => {
            phases.push(phase(&mut c, spec, true, false, &mut data)?);
            phases.push(phase(&mut c, spec, false, true, &mut data)?);
        }
    }
    let stats = c.stats();
    let reconnects = c.reconnects();
    let negotiated = c
        .io_queues()
        .first()
        .map(|q| q.connection().engine().protocol().digests());
    c.close().map_err(|e| format!("shutdown: {e}"))?;
    let mut target = target;
    if let Some(d) = negotiated {
        target = format!("{target}, {d}");
    }
    if reconnects > 0 {
        target = format!("{target}; reconnected {reconnects} time(s)");
    }
    Ok((phases, stats, target))
}

/// `nvme discover`: the discovery log of `spec.url` (or of a freshly started embedded target),
/// as `nvme discover` prints it.
///
/// # Errors
///
/// Connection, set-up or log failures, as a message naming the address.
pub fn discover(spec: &Spec) -> Result<String, String> {
    let nqn = ulp_nvme_tcp::nvme::DISCOVERY_NQN;
    let mut embedded = None;
    let addr = match &spec.url {
        Some(u) => u.addr(),
        None => {
            let config = with_tls(embedded_config(), &spec.tls, nqn)?;
            let t = Target::start(config).map_err(|e| format!("embedded target: {e}"))?;
            let a = t.addr().to_string();
            embedded = Some(t);
            a
        }
    };
    let mut o = Options::new(nqn);
    spec.recovery.apply(&mut o);
    o.digests = spec.digests;
    o.hostnqn = spec.tls.hostnqn();
    o.tls = spec.tls.psk(nqn)?;
    let log =
        ulp_nvme_tcp::blocking::discover(addr.as_str(), &o).map_err(|e| format!("{addr}: {e}"))?;
    drop(embedded);
    Ok(log.to_string())
}

/// `config` with `--tls`: the embedded target then serves TLS only, with the key the host
/// derives for `subnqn`.
fn with_tls(mut config: TargetConfig, tls: &TlsArgs, subnqn: &str) -> Result<TargetConfig, String> {
    config.tls = tls.psk(subnqn)?.map(|p| TargetTls {
        identity: p.identity().to_string(),
        key: p.key().to_vec(),
        required: true,
    });
    Ok(config)
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
    url: Option<&NvmeUrl>,
    qd: u16,
    digests: Digests,
    recovery: &Recovery,
    queues: u16,
    tls: &TlsArgs,
) -> Result<Opened, String> {
    let mut embedded = None;
    let (addr, nqn, nsid) = match url {
        Some(u) => (u.addr(), u.subnqn.clone(), u.nsid),
        None => {
            let config = embedded_config();
            let subnqn = config.subnqn.clone();
            let config = with_tls(config, tls, &subnqn)?;
            let t = Target::start(config).map_err(|e| format!("embedded target: {e}"))?;
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
    o.digests = digests;
    o.hostnqn = tls.hostnqn();
    o.tls = tls.psk(&nqn)?;
    let c = Controller::connect_with(addr.as_str(), &o, |_| SwBackend::new())
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let ns = c.namespace();
    let n = c.io_queues().len();
    let target = format!(
        "{addr} {nqn} ns {nsid} ({} x {} B, MN {}), {n} I/O queue{}{}, {} KiB per command at most",
        ns.nsze,
        ns.block_size,
        c.info().model,
        if n == 1 { "" } else { "s" },
        if tls.tls { " over TLS 1.3" } else { "" },
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
    url: Option<&NvmeUrl>,
    queues: u16,
    tls: &TlsArgs,
) -> Result<PerfResult, String> {
    let qd = u16::try_from(spec.qd).unwrap_or(1024);
    let (embedded, mut c, target) = open(url, qd, spec.digests, &Recovery::default(), queues, tls)?;
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

/// Runs a parsed `ulp-ddp nvme` command line and prints its result.
pub fn main(cmd: &NvmeCmd) -> std::process::ExitCode {
    use std::process::ExitCode;
    if let NvmeCmd::Perf(p) = cmd {
        let spec = p.perf.spec();
        return crate::perf::finish(
            "ulp-ddp nvme perf",
            spec.json,
            perf(&spec, p.url.as_ref(), p.queues, &p.tls),
        );
    }
    if let NvmeCmd::IdCtrl(a) | NvmeCmd::ListNs(a) = cmd {
        let (name, text) = match cmd {
            NvmeCmd::IdCtrl(_) => (
                "id-ctrl",
                crate::nvme_info::id_ctrl(a.url.as_ref(), a.digests.get(), &a.recovery),
            ),
            _ => (
                "list-ns",
                crate::nvme_info::list_ns(a.url.as_ref(), a.digests.get(), &a.recovery),
            ),
        };
        return match text {
            Ok(text) => {
                crate::out!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ulp-ddp nvme {name}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(spec) = Spec::from_cmd(cmd) else {
        return ExitCode::FAILURE;
    };
    if spec.op == "discover" {
        return match discover(&spec) {
            Ok(text) => {
                crate::out!("{text}");
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
            eprintln!("ulp-ddp nvme {}: {e}", spec.op);
            return ExitCode::FAILURE;
        }
    };
    // With the data on standard output, the summary goes to standard error.
    let to_stderr = spec.output.as_deref() == Some("-");
    let say = |line: String| {
        if to_stderr {
            eprintln!("{line}");
        } else {
            crate::outln!("{line}");
        }
    };
    say(format!(
        "target: {target}; {} B x {} at QD {}, digests {}",
        spec.size,
        spec.count,
        spec.qd,
        crate::args::digests_word(spec.digests)
    ));
    say(format!(
        "{:<6} {:>8} {:>10} {:>9} {:>10} {:>9} {:>7} {:>10}",
        "op", "commands", "MiB", "seconds", "IOPS", "MiB/s", "errors", "mismatches"
    ));
    let mut failed = false;
    for p in &phases {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        say(format!(
            "{:<6} {:>8} {:>10.1} {:>9.3} {:>10.0} {:>9.1} {:>7} {:>10}",
            p.op,
            p.commands,
            p.bytes as f64 / (1 << 20) as f64,
            secs,
            p.commands as f64 / secs,
            p.bytes as f64 / secs / (1 << 20) as f64,
            p.errors,
            p.mismatches
        ));
        failed |= p.errors > 0 || p.mismatches > 0;
    }
    say(format!(
        "placement: read in place {} B, copied {} B, placed by device {} B; digests computed {}, failed {}",
        stats.bytes_read_in_place,
        stats.bytes_copied,
        stats.bytes_placed,
        stats.digests_computed,
        stats.digests_failed
    ));
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
        let parts = |s: &str| {
            let u = parse_url(s).expect(s);
            (u.addr(), u.subnqn, u.nsid)
        };
        assert_eq!(
            parts("nvme-tcp://127.0.0.1:4420/nqn.2024-01.io.x:ram0/1"),
            ("127.0.0.1:4420".into(), "nqn.2024-01.io.x:ram0".into(), 1)
        );
        assert_eq!(
            parts("nvme-tcp://h/n/1"),
            ("h:4420".into(), "n".into(), 1),
            "port 4420 by default"
        );
        assert_eq!(
            parts("nvme-tcp://[::1]:4421/n/2"),
            ("[::1]:4421".into(), "n".into(), 2)
        );
        let e = parse_url("nvme://h/n/1").unwrap_err();
        assert!(
            e.starts_with("not an nvme-tcp:// URL: \"nvme://h/n/1\""),
            "{e}"
        );
        assert!(parse_url("tcp://h:1/n/1").is_err());
        let s = parse(&args("verify --size 4096 --count 3 --qd 2 --digests")).expect("parse");
        assert_eq!(
            (s.op.as_str(), s.size, s.count, s.qd, s.digests, s.url),
            ("verify", 4096, 3, 2, Digests::BOTH, None)
        );
        assert!(parse(&args("frob")).is_err());
        assert!(parse(&args("--size 4096")).is_err());
    }

    #[test]
    fn perf_mode_on_the_embedded_target() {
        for extra in ["", "--digests", "--write --digests"] {
            let v = args(&format!(
                "nvme perf --bs 64k --count 40 --qd 4 --no-progress {extra}"
            ));
            let Ok(Some(crate::cli::Cmd::Nvme {
                cmd: NvmeCmd::Perf(p),
            })) = crate::cli::Cli::try_parse_args(&v)
            else {
                panic!("{v:?} does not parse as nvme perf");
            };
            let spec = p.perf.spec();
            let r = perf(&spec, None, 1, &TlsArgs::default()).expect("perf");
            assert_eq!((r.commands, r.errors), (40, 0), "{extra}");
            assert_eq!(r.latency.count(), 40);
            assert!(r.json().contains("\"protocol\":\"nvme-tcp\""));
            if !spec.write {
                assert_eq!(r.stats.bytes_copied, 0);
                assert_eq!(r.stats.bytes_read_in_place, 40 * 65536);
                assert_eq!(r.copies_avoided(), 40 * 65536);
                // Header and data digests: C2HData (both) and CapsuleResp (header) per read.
                let digests = if spec.digests == Digests::BOTH {
                    3 * 40
                } else {
                    0
                };
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
            Some(NvmeUrl::parse_discovery("nvme-tcp://10.0.0.1:4420").expect("url"))
        );
        let url = url.expect("url");
        assert_eq!(
            (url.subnqn.as_str(), url.nsid),
            (ulp_nvme_tcp::nvme::DISCOVERY_NQN, 0)
        );
    }

    #[test]
    fn verify_on_four_queues() {
        let spec = parse(&args("verify --size 8192 --count 200 --qd 16 --queues 4")).expect("spec");
        assert_eq!(spec.queues, 4);
        let (embedded, mut c, _) = open(
            None,
            17,
            Digests::NONE,
            &Recovery::default(),
            4,
            &TlsArgs::default(),
        )
        .expect("open");
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

    #[test]
    fn verify_over_tls_on_the_embedded_target() {
        let dir = std::env::temp_dir().join(format!("ulp-ddp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("key");
        let key = ConfiguredPsk::new(ulp_nvme_tcp::psk::PskHash::None, &[0x3c; 32])
            .expect("key")
            .to_interchange();
        std::fs::write(&file, format!("{key}\n")).expect("key file");
        let line = format!(
            "verify --size 131072 --count 8 --qd 4 --digests --queues 2 --tls --tls-key-file {}",
            file.display()
        );
        let spec = parse(&args(&line)).expect("spec");
        assert!(spec.tls.tls);
        let (phases, stats, target) = run(&spec).expect("run over TLS");
        assert!(target.contains("over TLS 1.3"), "{target}");
        for p in &phases {
            assert_eq!((p.commands, p.errors, p.mismatches), (8, 0, 0));
        }
        assert_eq!(stats.bytes_copied, 0);
        // v1 identities too.
        let spec = parse(&args(&format!("{line} --tls-identity v1 --count 2"))).expect("spec");
        let (phases, ..) = run(&spec).expect("run over TLS, v1 identity");
        assert_eq!(phases[1].mismatches, 0);
        // Discovery over TLS (the identity names the discovery NQN), on a TLS-only target.
        let line = format!("discover --tls --tls-key-file {}", file.display());
        let spec = parse(&args(&line)).expect("discover spec");
        let text = discover(&spec).expect("discover over TLS");
        assert!(text.contains("subtype: nvme subsystem"), "{text}");
        // The key never on the command line: without a file or the environment, in words.
        if std::env::var_os(TLS_KEY_ENV).is_none() {
            let spec = parse(&args("verify --count 1 --tls")).expect("spec");
            let err = run(&spec).expect_err("no key");
            assert!(
                err.contains("--tls-key-file") && err.contains(TLS_KEY_ENV),
                "{err}"
            );
        }
        assert!(
            parse(&args("verify --tls-key-file /dev/null")).is_err(),
            "needs --tls"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
