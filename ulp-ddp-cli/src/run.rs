//! Runs generated workloads through the receive engine, by the two CPU paths: stream pieces
//! copied from a receive buffer, and the reader path over a loopback TCP socket.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SocketReader;
use ulp_ddp_core::testkit::{self, Outcome, Rng, Workload};
use ulp_ddp_core::{Engine, EngineOptions, Piece, QueueConfig, QueueId, SgBuffer, Stats};

use crate::demo::{TOY, Toy};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Commands (reads) in the workload.
    pub commands: usize,
    /// Largest command size in bytes.
    pub max_len: usize,
    /// Header and data digests on.
    pub digests: bool,
    /// Flip a data byte in some PDUs (with digests on, they must be caught).
    pub corrupt: bool,
    /// Largest stream piece handed to the engine at once (the copy path).
    pub max_piece: usize,
    /// Generator seed.
    pub seed: u64,
}

/// The result of one run.
#[derive(Debug)]
pub struct Report {
    /// Which path.
    pub path: &'static str,
    /// Stream bytes.
    pub stream_bytes: usize,
    /// Payload bytes.
    pub payload_bytes: u64,
    /// PDUs in the stream.
    pub pdus: usize,
    /// PDUs whose digest was corrupted on purpose.
    pub corrupted: usize,
    /// The engine's counters.
    pub stats: Stats,
    /// Buffers equal the reference (corrupted PDUs aside) and every verdict is right.
    pub verified: bool,
    /// Wall time of the receive loop.
    pub elapsed: Duration,
}

fn engine(spec: &Spec) -> Engine<Toy, SwBackend> {
    let config = QueueConfig::new(TOY, QueueId(1))
        .with_digests(spec.digests, spec.digests)
        .with_queue_depth(1024);
    Engine::new(
        Toy::new(spec.digests, spec.digests),
        SwBackend::new(),
        config,
        EngineOptions::default(),
    )
}

/// Generates the workload of `spec`.
pub fn workload(spec: &Spec) -> Workload {
    let mut toy = Toy::new(spec.digests, spec.digests);
    let mut rng = Rng::new(spec.seed);
    Workload::generate(
        &mut toy,
        &mut rng,
        spec.commands,
        spec.max_len,
        spec.corrupt && spec.digests,
    )
}

fn verify(w: &Workload, out: &Outcome) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        testkit::assert_matches_reference(w, out);
    }))
    .is_ok()
}

fn report(path: &'static str, w: &Workload, stats: Stats, verified: bool, t: Duration) -> Report {
    Report {
        path,
        stream_bytes: w.stream.len(),
        payload_bytes: w.commands.iter().map(|c| c.data.len() as u64).sum(),
        pdus: w.pdus.len(),
        corrupted: w.corrupted.len(),
        stats,
        verified,
        elapsed: t,
    }
}

/// The copy path: the stream in pieces of up to `spec.max_piece` bytes, as a receive buffer
/// would hold them.
pub fn copy_path(spec: &Spec, w: &Workload) -> Report {
    let mut rng = Rng::new(spec.seed ^ 0x00C0_FFEE);
    let pieces = testkit::cut(&w.stream, &mut rng, spec.max_piece);
    let mut e = engine(spec);
    setup(&mut e, w);
    let mut out = Outcome::default();
    let start = Instant::now();
    for piece in &pieces {
        if let Err(err) = e.receive(Piece::bytes(piece)) {
            out.fatal = Some(err.to_string());
            break;
        }
        testkit::drain(&mut e, &mut out);
    }
    let elapsed = start.elapsed();
    finish(&mut e, &mut out);
    report("copy", w, e.stats(), verify(w, &out), elapsed)
}

fn setup(e: &mut Engine<Toy, SwBackend>, w: &Workload) {
    for c in &w.commands {
        let segments = c.segments.iter().map(|&n| vec![0xEE; n]).collect();
        // Tags in a generated workload are distinct, so no setup finds its tag in use.
        let _ = e.setup(c.tag, SgBuffer::from_segments(segments));
    }
}

fn finish(e: &mut Engine<Toy, SwBackend>, out: &mut Outcome) {
    e.teardown_all();
    testkit::drain(e, out);
    out.buffers.sort_by_key(|(tag, _)| *tag);
}

/// The reader path: the stream sent over loopback TCP, payload read straight into the buffers.
///
/// # Errors
///
/// A socket error, or a fatal engine error.
pub fn reader_path(spec: &Spec, w: &Workload) -> Result<Report, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stream = w.stream.clone();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut sock, _) = listener.accept()?;
        sock.write_all(&stream)
    });
    let mut sock = TcpStream::connect(addr)?;
    let mut e = engine(spec);
    setup(&mut e, w);
    let mut reader = SocketReader::new(4096);
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut got = 0;
    while got < w.stream.len() {
        let n = reader.read_once(&mut e, &mut sock)?;
        if n == 0 {
            break;
        }
        got += n;
        testkit::drain(&mut e, &mut out);
    }
    let elapsed = start.elapsed();
    sender.join().map_err(|_| "sender thread panicked")??;
    finish(&mut e, &mut out);
    Ok(report("reader", w, e.stats(), verify(w, &out), elapsed))
}
