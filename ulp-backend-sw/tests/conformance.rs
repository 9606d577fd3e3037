//! The software backend against the conformance kit and the toy protocol (shared with the core's
//! tests), including a real loopback TCP socket for the reader path.

#[path = "../../ulp-ddp-core/tests/toy/mod.rs"]
mod toy;

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use proptest::prelude::*;
use toy::{TOY, Toy};
use ulp_backend_sw::{SocketReader, SwBackend};
use ulp_ddp_core::testkit::{self, Rng, Workload};
use ulp_ddp_core::{
    Decline, Engine, EngineOptions, Event, Limits, QueueConfig, QueueId, SetupOutcome, SgBuffer,
    TagRange,
};

fn device_like_limits() -> Limits {
    Limits {
        max_segments: 4,
        max_io_bytes: 512 * 1024,
        io_threshold: 2048,
        max_queues: 16,
        max_queue_depth: 1024,
        tag_range: TagRange::BelowQueueDepth,
        ..Limits::unlimited(TOY)
    }
}

#[test]
fn conformance_kit_unlimited() {
    testkit::run_all::<SwBackend, Toy>(SwBackend::new);
}

#[test]
fn conformance_kit_with_device_like_limits() {
    testkit::run_all::<SwBackend, Toy>(|| SwBackend::with_limits(device_like_limits()));
}

fn engine(backend: SwBackend, hd: bool, dd: bool) -> Engine<Toy, SwBackend> {
    let config = QueueConfig {
        header_digest: hd,
        data_digest: dd,
        queue_depth: 64,
        ..QueueConfig::new(TOY, QueueId(1))
    };
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
    let mut e = engine(SwBackend::new(), true, true);
    for c in &w.commands {
        let segs = c.segments.iter().map(|&n| vec![0; n]).collect();
        e.setup(c.tag, SgBuffer::from_segments(segs))
            .expect("setup");
    }
    let mut reader = SocketReader::new(4096);
    let mut total = 0;
    for _ in 0..10_000_000 {
        let n = reader.read_once(&mut e, &mut sock).expect("read");
        total += n;
        if n == 0 {
            break;
        }
    }
    sender.join().expect("sender");
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
    let payload: u64 = w.commands.iter().map(|c| c.data.len() as u64).sum();
    assert_eq!(s.bytes_read_in_place, payload);
    assert_eq!(s.bytes_copied, 0);
    assert_eq!(s.digests_failed, 0);
}
