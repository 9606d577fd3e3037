//! The `perf` mode shared by `ulp-ddp nvme perf`, `ulp-ddp iscsi perf` and `ulp-ddp tcp perf`:
//! one flag set, a closed loop keeping `--qd` commands outstanding, per-command latency in a
//! log-linear histogram, a progress bar, and one summary (table or `--json`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ulp_ddp_core::Stats;

/// Usage text of the flags every `perf` mode takes.
pub const FLAGS: &str = "\
perf flags (the same for tcp, nvme and iscsi):
  --bs BYTES      bytes per command (default 131072)
  --qd N          commands outstanding at once (default 8)
  --seconds S     run for S seconds (default 3) ...
  --count N       ... or for N commands
  --write         writes instead of reads
  --digests       header and data digests on
  --copy-below B  nvme/iscsi: while every outstanding read expects fewer than B bytes, read
                  the socket through a 64 KiB buffer, many PDUs per read, copying their
                  payload (SPDK's small-I/O policy); default 0: every payload read in place
  --json          one JSON object instead of the table
  --no-progress   no progress bar (it is only drawn on a terminal anyway)
";

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this long (commands in flight then complete).
    Seconds(f64),
    /// After this many commands.
    Count(u64),
}

/// The shared perf flags.
#[derive(Clone, Debug, PartialEq)]
pub struct PerfSpec {
    /// Bytes per command.
    pub bs: usize,
    /// Queue depth.
    pub qd: usize,
    /// When to stop.
    pub limit: Limit,
    /// Writes instead of reads.
    pub write: bool,
    /// Header and data digests.
    pub digests: bool,
    /// Small-payload policy of the protocol drivers' readers: payload of reads expecting
    /// fewer bytes than this goes through the receive buffer (0: always in place).
    pub copy_below: u64,
    /// JSON output.
    pub json: bool,
    /// Progress bar allowed.
    pub progress: bool,
}

impl Default for PerfSpec {
    fn default() -> Self {
        Self {
            bs: 128 * 1024,
            qd: 8,
            limit: Limit::Seconds(3.0),
            write: false,
            digests: false,
            copy_below: 0,
            json: false,
            progress: true,
        }
    }
}

impl PerfSpec {
    /// Takes the perf flags out of `args`; returns the spec and the arguments it did not know
    /// (URLs, subcommand words), in order.
    ///
    /// # Errors
    ///
    /// A message for a bad or missing value.
    pub fn parse(args: &[String]) -> Result<(Self, Vec<String>), String> {
        let mut spec = Self::default();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<String, String> {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let num = |v: String, name: &str| -> Result<u64, String> {
                v.parse::<u64>().map_err(|e| format!("{name}: {e}"))
            };
            match arg.as_str() {
                "--bs" | "--size" => spec.bs = num(value(arg)?, arg)?.max(1) as usize,
                "--qd" => spec.qd = num(value(arg)?, arg)?.clamp(1, 1024) as usize,
                "--seconds" => {
                    let s: f64 = value(arg)?.parse().map_err(|e| format!("--seconds: {e}"))?;
                    if !(s.is_finite() && s > 0.0) {
                        return Err("--seconds must be positive".into());
                    }
                    spec.limit = Limit::Seconds(s);
                }
                "--count" => spec.limit = Limit::Count(num(value(arg)?, arg)?.max(1)),
                "--write" => spec.write = true,
                "--digests" => spec.digests = true,
                "--copy-below" => spec.copy_below = num(value(arg)?, arg)?,
                "--json" => spec.json = true,
                "--no-progress" => spec.progress = false,
                _ => rest.push(arg.clone()),
            }
        }
        Ok((spec, rest))
    }

    /// `read` or `write`.
    pub fn op(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }
}

/// A log-linear latency histogram in nanoseconds: 32 linear sub-buckets per power of two
/// (relative error below 3 %), no allocation per sample.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; (64 * SUB) as usize],
            count: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        let sub = (v >> shift) - SUB; // 0..SUB
        ((u64::from(shift) + 1) * SUB + sub) as usize
    }

    /// The largest value of bucket `i` (what a percentile reports).
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let sub = i % SUB;
        ((SUB + sub + 1) << shift) - 1
    }

    /// Records one sample.
    pub fn record(&mut self, nanos: u64) {
        self.buckets[Self::index(nanos)] += 1;
        self.count += 1;
        self.max = self.max.max(nanos);
        self.sum += u128::from(nanos);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which a fraction `q` (0..=1) of the samples lie (bucket upper bound,
    /// capped at the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    /// The mean.
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }
}

/// What one perf run measured.
#[derive(Clone, Debug)]
pub struct PerfResult {
    /// `tcp`, `nvme-tcp`, `iscsi`.
    pub protocol: String,
    /// Where it ran (target description).
    pub target: String,
    /// `read` or `write`.
    pub op: &'static str,
    /// Bytes per command.
    pub bs: usize,
    /// Queue depth.
    pub qd: usize,
    /// Digests on.
    pub digests: bool,
    /// Commands completed.
    pub commands: u64,
    /// Commands that failed (bad status, digest error).
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency per command, submit to completion.
    pub latency: Histogram,
    /// CPU time of the thread that ran the commands (the host side: the blocking driver, or
    /// the baseline's receiver), where the platform tells ([`thread_cpu`]).
    pub host_cpu: Option<Duration>,
    /// Receive engine counters over the run.
    pub stats: Stats,
}

impl PerfResult {
    /// Commands per second.
    pub fn iops(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload GB/s (10^9 bytes).
    pub fn gbps(&self) -> f64 {
        self.commands as f64 * self.bs as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }

    /// Host CPU seconds per GB (10^9 bytes) of payload moved, if the CPU time is known.
    pub fn cpu_per_gb(&self) -> Option<f64> {
        let gb = self.commands as f64 * self.bs as f64 / 1e9;
        self.host_cpu
            .filter(|_| gb > 0.0)
            .map(|c| c.as_secs_f64() / gb)
    }

    /// Payload bytes that did not go through an intermediate buffer: read in place plus placed
    /// by a device.
    pub fn copies_avoided(&self) -> u64 {
        self.stats.bytes_read_in_place + self.stats.bytes_placed
    }

    /// The summary as one JSON object.
    pub fn json(&self) -> String {
        let s = &self.stats;
        let mut o = String::from("{");
        let _ = write!(
            o,
            "\"protocol\":{},\"target\":{},\"op\":\"{}\",\"bs\":{},\"qd\":{},\"digests\":{},\
             \"commands\":{},\"errors\":{},\"seconds\":{:.6},\"iops\":{:.1},\"gbps\":{:.4},\
             \"lat_p50_us\":{:.2},\"lat_p99_us\":{:.2},\"lat_mean_us\":{:.2},\"lat_max_us\":{:.2},\
             \"host_cpu_s\":{},\"host_cpu_s_per_gb\":{},\
             \"bytes_read_in_place\":{},\"bytes_copied\":{},\"bytes_placed\":{},\
             \"cpu_copies_avoided_bytes\":{},\"digests_offloaded\":{},\"digests_computed\":{},\
             \"digests_failed\":{}",
            json_str(&self.protocol),
            json_str(&self.target),
            self.op,
            self.bs,
            self.qd,
            self.digests,
            self.commands,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.iops(),
            self.gbps(),
            us(self.latency.quantile(0.50)),
            us(self.latency.quantile(0.99)),
            us(self.latency.mean()),
            us(self.latency.max),
            self.host_cpu
                .map_or_else(|| "null".to_string(), |c| format!("{:.6}", c.as_secs_f64())),
            self.cpu_per_gb()
                .map_or_else(|| "null".to_string(), |c| format!("{c:.4}")),
            s.bytes_read_in_place,
            s.bytes_copied,
            s.bytes_placed,
            self.copies_avoided(),
            s.digests_offloaded,
            s.digests_computed,
            s.digests_failed
        );
        o.push('}');
        o
    }

    /// Prints the summary (table, or JSON with `spec.json`).
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json());
            return;
        }
        println!("{}", self.target);
        println!("{}", table_header());
        println!("{}", self.table_row());
    }

    /// One row of the summary table.
    pub fn table_row(&self) -> String {
        let s = &self.stats;
        format!(
            "{:<8} {:<5} {:>8} {:>3} {:>4} {:>9} {:>10.0} {:>7.3} {:>9.1} {:>9.1} {:>8} {:>10} {:>8} {:>8} {:>10} {:>16} {:>4}",
            self.protocol,
            self.op,
            self.bs,
            self.qd,
            if self.digests { "on" } else { "off" },
            self.commands,
            self.iops(),
            self.gbps(),
            us(self.latency.quantile(0.50)),
            us(self.latency.quantile(0.99)),
            self.cpu_per_gb()
                .map_or_else(|| "-".to_string(), |c| format!("{c:.3}")),
            mb(s.bytes_read_in_place),
            mb(s.bytes_copied),
            mb(s.bytes_placed),
            mb(self.copies_avoided()),
            format!(
                "{}/{}/{}",
                s.digests_offloaded, s.digests_computed, s.digests_failed
            ),
            self.errors
        )
    }
}

/// The summary table's header line.
pub fn table_header() -> String {
    format!(
        "{:<8} {:<5} {:>8} {:>3} {:>4} {:>9} {:>10} {:>7} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>10} {:>16} {:>4}\n{}",
        "proto",
        "op",
        "bs",
        "qd",
        "dgst",
        "commands",
        "IOPS",
        "GB/s",
        "p50 us",
        "p99 us",
        "cpu s/GB",
        "inplace MB",
        "copy MB",
        "dev MB",
        "avoided MB",
        "dgst off/cmp/bad",
        "errs",
        "(cpu s/GB = host thread CPU seconds per GB of payload; avoided = payload not copied through an intermediate buffer: read in place + placed by a device)"
    )
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1e3
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A protocol's side of the closed loop: commands run in `qd` slots, each slot owning its buffer.
pub trait PerfIo {
    /// Submits the next command in `slot` (sent at once or at the next `wait`).
    ///
    /// # Errors
    ///
    /// A message; the run stops.
    fn submit(&mut self, slot: usize) -> Result<(), String>;

    /// Waits for any command; returns its slot and whether it succeeded.
    ///
    /// # Errors
    ///
    /// A message; the run stops.
    fn wait(&mut self) -> Result<(usize, bool), String>;
}

/// What [`closed_loop`] measured.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    /// Commands completed.
    pub commands: u64,
    /// Commands that failed.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency per command.
    pub latency: Histogram,
    /// CPU time of the calling thread over the loop ([`thread_cpu`]).
    pub host_cpu: Option<Duration>,
}

/// CPU time the calling thread has used so far, from `/proc/thread-self/schedstat` (Linux,
/// nanoseconds, updated at every context switch); `None` where that file does not exist.
pub fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Drives `io` with `spec`: keeps `spec.qd` commands outstanding until the limit, then drains.
///
/// # Errors
///
/// The first failure of `io`.
pub fn closed_loop(
    io: &mut impl PerfIo,
    spec: &PerfSpec,
    label: &str,
) -> Result<LoopOutcome, String> {
    let cpu_before = thread_cpu();
    let mut hist = Histogram::default();
    let mut started = vec![Instant::now(); spec.qd];
    let mut progress = Progress::new(spec, label);
    let start = Instant::now();
    let (mut submitted, mut done, mut errors) = (0u64, 0u64, 0u64);
    let more = |submitted: u64, now: Instant| match spec.limit {
        Limit::Count(n) => submitted < n,
        Limit::Seconds(s) => now.duration_since(start).as_secs_f64() < s,
    };
    for (slot, at) in started.iter_mut().enumerate() {
        if !more(submitted, Instant::now()) {
            break;
        }
        *at = Instant::now();
        io.submit(slot)?;
        submitted += 1;
    }
    while done < submitted {
        let (slot, ok) = io.wait()?;
        let now = Instant::now();
        hist.record(now.duration_since(started[slot]).as_nanos() as u64);
        done += 1;
        errors += u64::from(!ok);
        if more(submitted, now) {
            started[slot] = now;
            io.submit(slot)?;
            submitted += 1;
        }
        progress.tick(now, start, done, spec.bs);
    }
    let elapsed = start.elapsed();
    let host_cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    progress.finish();
    Ok(LoopOutcome {
        commands: done,
        errors,
        elapsed,
        latency: hist,
        host_cpu,
    })
}

/// A progress bar on stderr, redrawn at most every 100 ms, only on a terminal.
struct Progress {
    on: bool,
    limit: Limit,
    label: String,
    last: Instant,
    drawn: bool,
}

impl Progress {
    fn new(spec: &PerfSpec, label: &str) -> Self {
        Self {
            on: spec.progress && !spec.json && std::io::stderr().is_terminal(),
            limit: spec.limit,
            label: label.to_string(),
            last: Instant::now(),
            drawn: false,
        }
    }

    fn tick(&mut self, now: Instant, start: Instant, done: u64, bs: usize) {
        if !self.on || now.duration_since(self.last) < Duration::from_millis(100) {
            return;
        }
        self.last = now;
        let secs = now.duration_since(start).as_secs_f64();
        let frac = match self.limit {
            Limit::Seconds(s) => secs / s,
            Limit::Count(n) => done as f64 / n as f64,
        }
        .clamp(0.0, 1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r{} [{}{}] {:>3.0}% {:>8.2} GB/s {:>9.0} IOPS ",
            self.label,
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            done as f64 * bs as f64 / secs.max(1e-9) / 1e9,
            done as f64 / secs.max(1e-9)
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            eprint!("\r{:79}\r", "");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Subtracts counters (`after - before`) for the fields the summary shows.
pub fn stats_delta(after: Stats, before: Stats) -> Stats {
    Stats {
        pdus: after.pdus - before.pdus,
        data_pdus: after.data_pdus - before.data_pdus,
        bytes_placed: after.bytes_placed - before.bytes_placed,
        bytes_copied: after.bytes_copied - before.bytes_copied,
        bytes_read_in_place: after.bytes_read_in_place - before.bytes_read_in_place,
        digests_offloaded: after.digests_offloaded - before.digests_offloaded,
        digests_computed: after.digests_computed - before.digests_computed,
        digests_failed: after.digests_failed - before.digests_failed,
        ..after
    }
}

// ----- the raw TCP baselines -----

/// How the raw TCP baseline's server sends its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpBaseline {
    /// Bytes of source data the server walks through, one block after the other, as a server
    /// sends data it holds. The default is the embedded NVMe/TCP namespace's size, so that both
    /// senders copy from memory alike; a span of one block sends the same (cache-hot) block
    /// every time.
    pub span: usize,
    /// Request-response: the client sends a [`TCP_REQUEST_LEN`]-byte request per block and
    /// the server answers each with one block, `qd` requests outstanding; the floor of any
    /// request-response protocol on these sockets. Otherwise the server streams blocks
    /// without being asked.
    pub request_response: bool,
}

/// Bytes of one request in the request-response baseline (an NVMe/TCP read capsule is 72).
pub const TCP_REQUEST_LEN: usize = 64;

impl Default for TcpBaseline {
    fn default() -> Self {
        Self {
            span: crate::nvme_cli::EMBEDDED_NS_BYTES,
            request_response: false,
        }
    }
}

impl TcpBaseline {
    /// Takes `--span BYTES` and `--rr` out of `args`; returns the rest.
    ///
    /// # Errors
    ///
    /// A message for a bad or missing `--span` value.
    pub fn parse(args: &[String]) -> Result<(Self, Vec<String>), String> {
        let mut b = Self::default();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--span" => {
                    b.span = it
                        .next()
                        .ok_or("--span needs a value")?
                        .parse()
                        .map_err(|e| format!("--span: {e}"))?;
                }
                "--rr" => b.request_response = true,
                _ => rest.push(arg.clone()),
            }
        }
        Ok((b, rest))
    }

    /// The protocol label of a run: `tcp` (stream) or `tcp-rr`.
    pub fn label(&self) -> &'static str {
        if self.request_response {
            "tcp-rr"
        } else {
            "tcp"
        }
    }
}

/// The baseline server's source: `span` bytes (at least one block) of a fixed pattern, handed
/// out block by block in turn.
struct Source {
    data: Vec<u8>,
    bs: usize,
    at: usize,
}

impl Source {
    fn new(bs: usize, span: usize) -> Self {
        let blocks = span.div_ceil(bs).max(1);
        let data = (0..blocks * bs)
            .map(|i| (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes()[3])
            .collect();
        Self { data, bs, at: 0 }
    }

    fn next_block(&mut self) -> std::ops::Range<usize> {
        let r = self.at..self.at + self.bs;
        self.at = if r.end == self.data.len() { 0 } else { r.end };
        r
    }
}

/// The baseline server on one accepted connection: streams blocks until the peer goes away, or
/// (request-response) reads one request at a time and answers it at once with one block.
/// (Answering each request at once beats gathering the requests of one read into one vectored
/// write by about 2x at 4 KiB here: the client gets its blocks evenly instead of in bursts and
/// sleeps less; the protocol targets do the same for small answers.)
fn tcp_serve(
    mut sock: TcpStream,
    mut src: Source,
    request_response: bool,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    if !request_response {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = src.next_block();
            sock.write_all(&src.data[r])?;
        }
        return Ok(());
    }
    let mut req = [0u8; TCP_REQUEST_LEN];
    loop {
        match sock.read_exact(&mut req) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let r = src.next_block();
        sock.write_all(&src.data[r])?;
    }
}

/// `ulp-ddp tcp perf`: a server thread sends `bs`-byte blocks over loopback TCP, walking
/// through `baseline.span` bytes of source data, as a stream or one block per request
/// ([`TcpBaseline`]); the client reads each block straight into a destination buffer of `bs`
/// bytes (one of `qd`, reused in turn), with no protocol work. "Latency" is the time from a
/// slot's submission (its request, in request-response mode) to its whole block.
///
/// # Errors
///
/// Socket errors.
pub fn tcp_perf(spec: &PerfSpec, baseline: TcpBaseline) -> Result<PerfResult, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let bs = spec.bs;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    // The source is filled before the clock starts (64 MiB take tens of milliseconds).
    let src = Source::new(bs, baseline.span);
    let rr = baseline.request_response;
    let server = std::thread::Builder::new()
        .name("tcp-perf-send".into())
        .spawn(move || -> std::io::Result<()> {
            let (sock, _) = listener.accept()?;
            tcp_serve(sock, src, rr, &stop2)
        })
        .map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut io = TcpIo {
        sock,
        bufs: (0..spec.qd).map(|_| vec![0u8; bs]).collect(),
        pending: std::collections::VecDeque::new(),
        request_response: baseline.request_response,
        unsent: 0,
        requests: vec![0; spec.qd * TCP_REQUEST_LEN],
    };
    let result = closed_loop(&mut io, spec, baseline.label());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = io.sock.shutdown(std::net::Shutdown::Both);
    let _ = server.join();
    let run = result?;
    let stats = Stats {
        bytes_read_in_place: run.commands * bs as u64,
        ..Stats::default()
    };
    let how = if baseline.request_response {
        "one block per 64-byte request"
    } else {
        "a stream"
    };
    Ok(PerfResult {
        protocol: baseline.label().into(),
        target: format!(
            "raw loopback TCP {addr}: {bs}-byte blocks as {how}, from {} MiB of source, read straight into a destination buffer",
            (baseline.span.div_ceil(bs).max(1) * bs) >> 20
        ),
        op: "read",
        bs,
        qd: spec.qd,
        digests: false,
        commands: run.commands,
        errors: run.errors,
        elapsed: run.elapsed,
        latency: run.latency,
        host_cpu: run.host_cpu,
        stats,
    })
}

struct TcpIo {
    sock: TcpStream,
    bufs: Vec<Vec<u8>>,
    pending: std::collections::VecDeque<usize>,
    request_response: bool,
    /// Requests submitted but not yet written (request-response): written together at the
    /// next `wait`, as a protocol driver batches its commands.
    unsent: usize,
    /// The request bytes (zeros), kept between waits.
    requests: Vec<u8>,
}

impl PerfIo for TcpIo {
    fn submit(&mut self, slot: usize) -> Result<(), String> {
        self.pending.push_back(slot);
        self.unsent += usize::from(self.request_response);
        Ok(())
    }

    fn wait(&mut self) -> Result<(usize, bool), String> {
        if self.unsent > 0 {
            let n = self.unsent * TCP_REQUEST_LEN;
            if self.requests.len() < n {
                self.requests.resize(n, 0);
            }
            self.sock
                .write_all(&self.requests[..n])
                .map_err(|e| format!("tcp request: {e}"))?;
            self.unsent = 0;
        }
        let slot = self.pending.pop_front().ok_or("nothing outstanding")?;
        self.sock
            .read_exact(&mut self.bufs[slot])
            .map_err(|e| format!("tcp read: {e}"))?;
        Ok((slot, true))
    }
}

/// The `tcp` subcommand: `ulp-ddp tcp perf [--rr] [--span BYTES] [flags]`.
pub fn tcp_main(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let usage = format!(
        "usage: ulp-ddp tcp perf [--rr] [--span BYTES] [flags]\n  the raw loopback TCP baseline: a server thread sends --bs blocks, walking through\n  --span bytes of source (default {} MiB, the embedded NVMe/TCP namespace); as a stream, or\n  with --rr one block per 64-byte request, --qd requests outstanding\n{FLAGS}",
        crate::nvme_cli::EMBEDDED_NS_BYTES >> 20
    );
    let parsed = PerfSpec::parse(args)
        .and_then(|(spec, rest)| TcpBaseline::parse(&rest).map(|(b, rest)| (spec, b, rest)));
    let (spec, baseline, rest) = match parsed {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ulp-ddp tcp: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["perf"] => {}
        ["-h" | "--help"] => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("ulp-ddp tcp: expected `perf` and flags\n{usage}");
            return ExitCode::from(2);
        }
    }
    match tcp_perf(&spec, baseline) {
        Ok(r) => {
            r.print(spec.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ulp-ddp tcp: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ulp-ddp perf-compare [flags] [--repeat N] [--span BYTES]`: the raw TCP baselines (stream
/// and request-response), then nvme and iscsi against their embedded targets, back to back with
/// the same flags, `N` rounds; prints every run, then the medians and each protocol's ratios to
/// both baselines.
pub fn compare_main(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut repeat = 3usize;
    let mut filtered = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--repeat" {
            match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => repeat = usize::max(n, 1),
                None => {
                    eprintln!("ulp-ddp perf-compare: --repeat needs a number");
                    return ExitCode::from(2);
                }
            }
        } else {
            filtered.push(a.clone());
        }
    }
    let parsed = PerfSpec::parse(&filtered)
        .and_then(|(spec, rest)| TcpBaseline::parse(&rest).map(|(b, rest)| (spec, b, rest)));
    let (mut spec, baseline, rest) = match parsed {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ulp-ddp perf-compare: {e}");
            return ExitCode::from(2);
        }
    };
    if !rest.is_empty() || baseline.request_response {
        eprintln!(
            "usage: ulp-ddp perf-compare [--repeat N] [--span BYTES] [flags]\n  raw TCP (stream, then request-response), nvme and iscsi perf back to back on\n  loopback (embedded targets); --span: the TCP server's source bytes\n{FLAGS}"
        );
        return if rest.iter().any(|a| a == "-h" || a == "--help") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let json = spec.json;
    spec.json = false;
    const LABELS: [&str; 4] = ["tcp", "tcp-rr", "nvme-tcp", "iscsi"];
    let mut runs: Vec<[PerfResult; 4]> = Vec::new();
    if !json {
        println!("{}", table_header());
    }
    let tcp_spec = PerfSpec {
        write: false,
        digests: false,
        ..spec
    };
    for _ in 0..repeat {
        let round = [
            tcp_perf(&tcp_spec, baseline),
            tcp_perf(
                &tcp_spec,
                TcpBaseline {
                    request_response: true,
                    ..baseline
                },
            ),
            crate::nvme_cli::perf(&spec, None),
            crate::iscsi_cli::perf(&spec, None),
        ];
        let (done, errors): (Vec<_>, Vec<_>) = round.into_iter().partition(Result::is_ok);
        let Ok(round) =
            <[PerfResult; 4]>::try_from(done.into_iter().flatten().collect::<Vec<PerfResult>>())
        else {
            for e in errors.into_iter().filter_map(Result::err) {
                eprintln!("ulp-ddp perf-compare: {e}");
            }
            return ExitCode::FAILURE;
        };
        if json {
            let parts: Vec<String> = round.iter().map(PerfResult::json).collect();
            println!("{{\"runs\":[{}]}}", parts.join(","));
        } else {
            for r in &round {
                println!("{}", r.table_row());
            }
        }
        runs.push(round);
    }
    let median = |f: &dyn Fn(&[PerfResult; 4]) -> f64| -> f64 {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let gbps: Vec<f64> = (0..4).map(|i| median(&|r| r[i].gbps())).collect();
    // ratios[p][b]: protocol p (nvme-tcp, iscsi) over baseline b (tcp, tcp-rr), median per round
    let ratios: Vec<[f64; 2]> = (2..4)
        .map(|p| [0, 1].map(|b| median(&|r| r[p].gbps() / r[b].gbps())))
        .collect();
    // Host CPU per GB of each protocol over the stream baseline's receiver (NaN if unknown).
    let cpu: Vec<f64> = (2..4)
        .map(|p| {
            median(&|r| match (r[p].cpu_per_gb(), r[0].cpu_per_gb()) {
                (Some(a), Some(b)) if b > 0.0 => a / b,
                _ => f64::NAN,
            })
        })
        .collect();
    if json {
        let g: Vec<String> = LABELS
            .iter()
            .zip(&gbps)
            .map(|(l, v)| format!("\"{l}\":{v:.4}"))
            .collect();
        let r: Vec<String> = LABELS[2..]
            .iter()
            .zip(&ratios)
            .zip(&cpu)
            .map(|((l, [t, rr]), c)| {
                let c = if c.is_finite() {
                    format!("{c:.4}")
                } else {
                    "null".into()
                };
                format!(
                    "\"{l}\":{{\"tcp\":{t:.4},\"tcp-rr\":{rr:.4},\"host_cpu_per_gb_vs_tcp\":{c}}}"
                )
            })
            .collect();
        println!(
            "{{\"median_gbps\":{{{}}},\"median_ratio\":{{{}}},\"repeat\":{repeat}}}",
            g.join(","),
            r.join(",")
        );
    } else {
        println!(
            "medians of {repeat} rounds, {} B {} QD {} digests {}: tcp {:.3} GB/s, tcp-rr {:.3} GB/s",
            spec.bs,
            spec.op(),
            spec.qd,
            if spec.digests { "on" } else { "off" },
            gbps[0],
            gbps[1]
        );
        for (i, [t, rr]) in ratios.iter().enumerate() {
            println!(
                "  {:<8} {:.3} GB/s = {t:.2}x tcp, {rr:.2}x tcp-rr; host CPU per GB {:.2}x tcp's receiver",
                LABELS[i + 2],
                gbps[i + 2],
                cpu[i]
            );
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags() {
        let (s, rest) = PerfSpec::parse(&args(
            "perf x://u --bs 4096 --qd 2 --count 9 --digests --json --copy-below 8192",
        ))
        .expect("parse");
        assert_eq!(rest, args("perf x://u"));
        assert_eq!(s.copy_below, 8192);
        assert_eq!(
            (s.bs, s.qd, s.limit, s.digests, s.json, s.write),
            (4096, 2, Limit::Count(9), true, true, false)
        );
        assert!(PerfSpec::parse(&args("--seconds 0")).is_err());
        assert!(PerfSpec::parse(&args("--bs")).is_err());
    }

    #[test]
    fn histogram_quantiles_within_bucket_error() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        for v in [0u64, 1, 31, 32, 33, 1 << 40, u64::MAX / 2] {
            let i = Histogram::index(v);
            assert!(Histogram::upper(i) >= v, "{v}");
        }
    }

    #[test]
    fn tcp_baseline_runs() {
        let spec = PerfSpec {
            bs: 65536,
            limit: Limit::Count(50),
            progress: false,
            ..PerfSpec::default()
        };
        for rr in [false, true] {
            let baseline = TcpBaseline {
                span: 3 * 65536 + 1,
                request_response: rr,
            };
            let r = tcp_perf(&spec, baseline).expect("tcp");
            assert_eq!((r.commands, r.errors), (50, 0));
            assert_eq!(r.latency.count(), 50);
            assert_eq!(r.stats.bytes_read_in_place, 50 * 65536);
            let label = if rr { "tcp-rr" } else { "tcp" };
            assert!(r.json().contains(&format!("\"protocol\":\"{label}\"")));
            assert!(r.target.contains("MiB of source"), "{}", r.target);
        }
    }

    #[test]
    fn tcp_baseline_flags_and_source() {
        let (b, rest) = TcpBaseline::parse(&args("perf --rr --span 4096 --bs 9")).expect("parse");
        assert_eq!(
            b,
            TcpBaseline {
                span: 4096,
                request_response: true
            }
        );
        assert_eq!(rest, args("perf --bs 9"));
        assert!(TcpBaseline::parse(&args("--span x")).is_err());
        // The source walks every block of the span in turn, then starts over.
        let mut src = Source::new(100, 250);
        let seen: Vec<_> = (0..4).map(|_| src.next_block()).collect();
        assert_eq!(seen, vec![0..100, 100..200, 200..300, 0..100]);
        assert_eq!(src.data.len(), 300);
    }
}
