//! The software backend against the conformance kit and the toy protocol (shared with the core's
//! tests), including a real loopback TCP socket for the reader path.

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use proptest::prelude::*;
use ulp_backend_sw::{SocketReader, Streaming, SwBackend};
use ulp_ddp_core::testkit::{self, Rng, Workload};
use ulp_ddp_core::{
    Decline, Engine, EngineOptions, Event, Limits, QueueConfig, QueueId, SetupOutcome, SgBuffer,
    TagRange,
};
use ulp_testbed::toy::{TOY, Toy};

fn device_like_limits() -> Limits {
    let mut limits = Limits::unlimited(TOY);
    limits.max_segments = 4;
    limits.max_io_bytes = 512 * 1024;
    limits.io_threshold = 2048;
    limits.max_queues = 16;
    limits.max_queue_depth = 1024;
    limits.tag_range = TagRange::BelowQueueDepth;
    limits
}

#[test]
fn conformance_kit_unlimited() {
    testkit::run_all::<SwBackend, Toy>(SwBackend::new);
}

#[test]
fn conformance_kit_streaming_mover() {
    testkit::run_all::<SwBackend<Streaming>, Toy>(SwBackend::streaming);
}

#[test]
fn conformance_kit_with_device_like_limits() {
    testkit::run_all::<SwBackend, Toy>(|| SwBackend::with_limits(device_like_limits()));
}

fn engine(backend: SwBackend, hd: bool, dd: bool) -> Engine<Toy, SwBackend> {
    let config = QueueConfig::new(TOY, QueueId(1))
        .with_digests(hd, dd)
        .with_queue_depth(64);
    Engine::new(Toy::new(hd, dd), backend, config, EngineOptions::default())
}

#[test]
fn limits_decide_what_is_mapped() {
    let mut e = engine(SwBackend::with_limits(device_like_limits()), false, false);
    let cases = [
        (0, SgBuffer::zeroed(4096), SetupOutcome::Offloaded),
        (
            1,
            SgBuffer::zeroed(100),
            SetupOutcome::Copied(Decline::BelowThreshold),
        ),
        (
            2,
            SgBuffer::from_segments(vec![vec![0; 1024]; 5]),
            SetupOutcome::Copied(Decline::TooManySegments),
        ),
        (
            3,
            SgBuffer::zeroed(1 << 20),
            SetupOutcome::Copied(Decline::TooLarge),
        ),
        (
            64,
            SgBuffer::zeroed(4096),
            SetupOutcome::Copied(Decline::TagOutOfRange),
        ),
    ];
    for (tag, buffer, want) in cases {
        assert_eq!(
            e.setup(ulp_ddp_core::Tag(tag), buffer).unwrap(),
            want,
            "tag {tag}"
        );
    }
    assert_eq!(e.backend().mapped(QueueId(1)), 1);
    let s = e.stats();
    assert_eq!((s.setups, s.setups_declined), (1, 4));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random toy streams cut into random pieces, the buffers equal the reference and the
    /// digest verdicts are right, corrupted digests included, with and without device-like limits.
    #[test]
    fn random_streams_random_pieces(
        seed in any::<u64>(),
        hd in any::<bool>(),
        dd in any::<bool>(),
        corrupt in any::<bool>(),
        limited in any::<bool>(),
        max_piece in 1usize..20_000,
    ) {
        let mut toy = Toy::new(hd, dd);
        let mut rng = Rng::new(seed);
        let w = Workload::generate(&mut toy, &mut rng, 4, 40_000, corrupt && dd);
        let pieces = testkit::cut(&w.stream, &mut rng, max_piece);
        let backend = if limited {
            SwBackend::with_limits(device_like_limits())
        } else {
            SwBackend::new()
        };
        let mut e = engine(backend, hd, dd);
        let out = testkit::run_pieces(&mut e, &w, &pieces);
        testkit::assert_matches_reference(&w, &out);
        let s = e.stats();
        prop_assert_eq!(s.digests_failed, w.corrupted.len() as u64);
        prop_assert_eq!(s.setups + s.setups_declined, w.commands.len() as u64);
    }
}

/// Registers every command of `w`, feeds `src` through `reader` until its end, and checks that
/// every buffer comes back with the command's data and every digest verdict is good. Returns the
/// number of `read_once` calls and the engine's statistics.
fn run_reader(
    w: &Workload,
    mut reader: SocketReader,
    src: &mut impl std::io::Read,
) -> (usize, ulp_ddp_core::Stats) {
    let mut e = engine(SwBackend::new(), true, true);
    for c in &w.commands {
        let segs = c.segments.iter().map(|&n| vec![0; n]).collect();
        e.setup(c.tag, SgBuffer::from_segments(segs))
            .expect("setup");
    }
    let mut total = 0;
    let mut reads = 0;
    for _ in 0..10_000_000 {
        let n = reader.read_once(&mut e, src).expect("read");
        reads += 1;
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, w.stream.len());
    assert!(!e.is_mid_pdu());
    e.teardown_all();
    let mut got = Vec::new();
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released { tag, buffer, .. } => got.push((tag, buffer.into_vec())),
            Event::Data { digest, .. } | Event::Control { digest, .. } => {
                assert!(digest.is_ok(), "{digest:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    got.sort_by_key(|(t, _)| *t);
    assert_eq!(got.len(), w.commands.len(), "every buffer comes back");
    for (c, (_, data)) in w.commands.iter().zip(&got) {
        assert!(c.data == *data, "{} differs", c.tag);
    }
    let s = e.stats();
    assert_eq!(s.digests_failed, 0);
    (reads, s)
}

fn payload_bytes(w: &Workload) -> u64 {
    w.commands.iter().map(|c| c.data.len() as u64).sum()
}

/// The reader path over a real loopback socket: every payload byte is read straight into the
/// registered buffers; none goes through the receive buffer.
#[test]
fn reader_path_over_loopback_tcp() {
    let mut toy = Toy::new(true, true);
    let mut rng = Rng::new(42);
    let w = Workload::generate(&mut toy, &mut rng, 8, 300_000, false);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = w.stream.clone();
    let sender = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.write_all(&stream).expect("send");
    });
    let mut sock = TcpStream::connect(addr).expect("connect");
    let (_, s) = run_reader(&w, SocketReader::new(4096), &mut sock);
    sender.join().expect("sender");
    assert_eq!(s.bytes_read_in_place, payload_bytes(&w));
    assert_eq!(s.bytes_copied, 0);
}

/// With small commands outstanding, `copy_small_payloads` fills the receive buffer with every
/// read: many PDUs per read instead of one read per header and per payload, their payload
/// copied by the engine.
#[test]
fn small_payloads_are_read_through_the_receive_buffer() {
    let mut toy = Toy::new(true, true);
    let mut rng = Rng::new(7);
    let w = Workload::generate(&mut toy, &mut rng, 24, 3000, false);
    let (exact_reads, s) = run_reader(
        &w,
        SocketReader::new(64 * 1024),
        &mut std::io::Cursor::new(&w.stream),
    );
    assert_eq!(s.bytes_copied, 0);
    let (reads, s) = run_reader(
        &w,
        SocketReader::new(64 * 1024).copy_small_payloads(16 * 1024),
        &mut std::io::Cursor::new(&w.stream),
    );
    // One read per 64 KiB of stream, plus the one that sees the end.
    assert_eq!(reads, w.stream.len().div_ceil(64 * 1024) + 1);
    assert!(exact_reads > 2 * w.commands.len(), "{exact_reads}");
    // In place, the data digest and the next header come in the same (vectored) read as the
    // payload they follow: fewer than three reads per PDU here (reading them separately took
    // 885 reads for these 242 PDUs).
    assert!(exact_reads < 3 * w.pdus.len(), "{exact_reads} reads");
    assert_eq!(s.bytes_copied, payload_bytes(&w));
    assert_eq!(s.bytes_read_in_place, 0);
}

/// While a command at or above the threshold is outstanding, the reader reads exactly as
/// without the policy; once every outstanding command expects less, it copies, so a command
/// never has more than the threshold copied, and a PDU at or above the threshold is read in
/// place whole.
#[test]
fn large_payloads_stay_in_place_under_the_small_payload_policy() {
    let mut toy = Toy::new(true, true);
    let mut rng = Rng::new(9);
    let w = Workload::generate(&mut toy, &mut rng, 8, 300_000, false);
    let threshold = 16 * 1024u64;
    let (_, s) = run_reader(
        &w,
        SocketReader::new(64 * 1024).copy_small_payloads(threshold),
        &mut std::io::Cursor::new(&w.stream),
    );
    let payload = payload_bytes(&w);
    assert_eq!(s.bytes_copied + s.bytes_read_in_place, payload);
    assert!(
        s.bytes_copied < threshold * w.commands.len() as u64,
        "{} copied",
        s.bytes_copied
    );
    assert!(s.bytes_read_in_place > payload / 2, "{s:?}");
    assert!(s.bytes_copied <= small_pdu_bytes(&w, threshold), "{s:?}");
}

/// One 40 KiB PDU that arrives in reads of at most 32 KiB: its last 8 KiB, below the
/// threshold, are still read in place (the PDU as a whole is large), so nothing is copied.
#[test]
fn the_tail_of_a_large_pdu_is_read_in_place() {
    use ulp_ddp_core::testkit::{Command, KitProtocol};
    let toy = Toy::new(true, true);
    let data = Rng::new(3).bytes(40 * 1024);
    let w = Workload {
        stream: toy.encode_data(ulp_ddp_core::Tag(0), 0, &data),
        commands: vec![Command {
            tag: ulp_ddp_core::Tag(0),
            segments: vec![data.len()],
            data,
        }],
        pdus: vec![Some(ulp_ddp_core::Tag(0))],
        data_lens: vec![40 * 1024],
        control: Vec::new(),
        corrupted: Vec::new(),
    };
    let mut src = Capped {
        data: &w.stream,
        at: 0,
        cap: 32 * 1024,
    };
    let (reads, s) = run_reader(
        &w,
        SocketReader::new(64 * 1024).copy_small_payloads(16 * 1024),
        &mut src,
    );
    assert_eq!(s.bytes_copied, 0, "{s:?}");
    assert_eq!(s.bytes_read_in_place, 40 * 1024);
    assert!(reads >= 3, "{reads} reads");
}

/// A source that returns at most `cap` bytes per read.
struct Capped<'a> {
    data: &'a [u8],
    at: usize,
    cap: usize,
}

impl std::io::Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.cap).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Data bytes of the workload's data PDUs that carry fewer than `threshold` bytes: all the
/// small-payload policy may copy.
fn small_pdu_bytes(w: &Workload, threshold: u64) -> u64 {
    w.pdus
        .iter()
        .zip(&w.data_lens)
        .filter(|(tag, len)| tag.is_some() && (**len as u64) < threshold)
        .map(|(_, &len)| len as u64)
        .sum()
}

/// A source that returns short reads of random sizes (as a socket does), vectored or not.
struct Choppy<'a> {
    data: &'a [u8],
    at: usize,
    rng: Rng,
    max: u64,
}

impl Choppy<'_> {
    fn grant(&mut self, want: usize) -> usize {
        let n = 1 + self.rng.below(self.max) as usize;
        n.min(want).min(self.data.len() - self.at)
    }
}

impl std::io::Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.grant(buf.len());
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        let want = bufs.iter().map(|b| b.len()).sum();
        let mut left = self.grant(want);
        let mut total = 0;
        for b in bufs.iter_mut() {
            let k = left.min(b.len());
            b[..k].copy_from_slice(&self.data[self.at..self.at + k]);
            self.at += k;
            left -= k;
            total += k;
        }
        Ok(total)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The reader path under short reads of random sizes, with and without the small-payload
    /// policy: every buffer equals the reference, every digest verdict is good, and payload is
    /// only copied under the policy (then less than the threshold per command, and only from
    /// PDUs carrying less than the threshold).
    #[test]
    fn reader_path_under_random_short_reads(
        seed in any::<u64>(),
        max_read in 1u64..20_000,
        threshold in prop_oneof![Just(0u64), 1u64..40_000],
    ) {
        let mut toy = Toy::new(true, true);
        let mut rng = Rng::new(seed);
        let w = Workload::generate(&mut toy, &mut rng, 6, 30_000, false);
        let mut src = Choppy { data: &w.stream, at: 0, rng: Rng::new(seed ^ 1), max: max_read };
        let reader = SocketReader::new(16 * 1024).copy_small_payloads(threshold);
        let (_, s) = run_reader(&w, reader, &mut src);
        prop_assert_eq!(s.bytes_copied + s.bytes_read_in_place, payload_bytes(&w));
        if threshold == 0 {
            prop_assert_eq!(s.bytes_copied, 0);
        } else {
            prop_assert!(s.bytes_copied < threshold * w.commands.len() as u64 + 1);
            prop_assert!(s.bytes_copied <= small_pdu_bytes(&w, threshold));
        }
    }
}
