//! The raw loopback TCP baselines: a stream of blocks, and request-response.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ulp_ddp_core::Stats;

use super::closed_loop::{PerfIo, closed_loop};
use super::report::PerfResult;
use super::spec::PerfSpec;

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
            span: super::EMBEDDED_BYTES,
            request_response: false,
        }
    }
}

impl TcpBaseline {
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
        digests: ulp_ddp_core::Digests::NONE,
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

/// `ulp-ddp tcp perf`: the raw loopback TCP baseline.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum TcpCmd {
    /// The raw loopback TCP baseline: a server thread sends --bs blocks, walking through --span
    /// bytes of source (default 64 MiB, the embedded NVMe/TCP namespace); as a stream, or with
    /// --rr one block per 64-byte request, --qd requests outstanding
    #[command(args_override_self = true)]
    Perf(TcpArgs),
}

/// The flags of `ulp-ddp tcp perf`.
#[derive(clap::Args, Clone, Debug)]
pub struct TcpArgs {
    /// Request-response: one block per 64-byte request
    #[arg(long)]
    pub rr: bool,
    #[command(flatten)]
    /// The source span.
    pub span: SpanArg,
    #[command(flatten)]
    /// The perf flags.
    pub perf: super::PerfArgs,
}

/// `--span BYTES`: the TCP server's source bytes.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct SpanArg {
    /// Bytes of source the TCP server walks through (default: 64M)
    #[arg(long, value_name = "BYTES", value_parser = crate::args::size)]
    pub span: Option<usize>,
}

impl SpanArg {
    /// The baseline with this span (stream).
    pub fn baseline(&self) -> TcpBaseline {
        TcpBaseline {
            span: self.span.unwrap_or(super::EMBEDDED_BYTES),
            request_response: false,
        }
    }
}

/// Runs `ulp-ddp tcp perf`.
pub fn tcp_main(cmd: &TcpCmd) -> std::process::ExitCode {
    let TcpCmd::Perf(a) = cmd;
    let spec = a.perf.spec();
    let baseline = TcpBaseline {
        request_response: a.rr,
        ..a.span.baseline()
    };
    super::finish("ulp-ddp tcp", spec.json, tcp_perf(&spec, baseline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::spec::Limit;

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
    fn tcp_baseline_source() {
        // The source walks every block of the span in turn, then starts over.
        let mut src = Source::new(100, 250);
        let seen: Vec<_> = (0..4).map(|_| src.next_block()).collect();
        assert_eq!(seen, vec![0..100, 100..200, 200..300, 0..100]);
        assert_eq!(src.data.len(), 300);
    }
}
