//! The mlx5 backend (driver + device model + reassembly) and the software backend are
//! interchangeable: for random NVMe/TCP read workloads, whatever the network does to the
//! segments (cuts, reordering, duplication, loss and retransmission) and with corrupted data
//! digests, the caller sees the same buffers, digest verdicts, errors and completions.

use proptest::prelude::*;
use ulp_backend_mlx5::{Model, Nic};
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::testkit::{KitProtocol, Rng, Workload};
use ulp_ddp_core::{
    DataError, DdpBackend, DigestStatus, Engine, EngineOptions, Error, Event, Piece, Protocol,
    QueueConfig, QueueId, SgBuffer, Tag, TcpSeq,
};
use ulp_nvme_tcp::NvmeTcpHost;
use ulp_nvme_tcp::wire::Error as WireError;

/// What the caller sees, with the digest verdict reduced to what it means to the caller
/// (offloaded and computed are both "verified").
#[derive(Debug, PartialEq)]
enum Seen {
    Data {
        tag: Tag,
        offset: u64,
        len: u32,
        digest: Verdict,
    },
    Control {
        data: Vec<u8>,
        digest: Verdict,
    },
    Error(DataError),
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Absent,
    Verified,
    Mismatch { computed: u32, received: u32 },
}

fn verdict(d: DigestStatus) -> Verdict {
    match d {
        DigestStatus::Absent => Verdict::Absent,
        DigestStatus::Mismatch { computed, received } => Verdict::Mismatch { computed, received },
        _ => Verdict::Verified,
    }
}

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    seen: Vec<Seen>,
    released: Vec<(Tag, Vec<u8>)>,
    fatal: Option<Error<WireError>>,
}

fn drain<P: Protocol, B: DdpBackend>(e: &mut Engine<P, B>, out: &mut Outcome) {
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Data {
                tag,
                offset,
                len,
                digest,
                ..
            } => out.seen.push(Seen::Data {
                tag,
                offset,
                len,
                digest: verdict(digest),
            }),
            Event::Control { data, digest, .. } => out.seen.push(Seen::Control {
                data,
                digest: verdict(digest),
            }),
            Event::Released { tag, buffer, .. } => out.released.push((tag, buffer.into_vec())),
            Event::Error(e) => out.seen.push(Seen::Error(e)),
            other => panic!("unexpected event {other:?}"),
        }
    }
}

fn register<P: Protocol, B: DdpBackend>(e: &mut Engine<P, B>, w: &Workload) {
    for cmd in &w.commands {
        let segments = cmd.segments.iter().map(|&n| vec![0xEE; n]).collect();
        assert!(e.setup(cmd.tag, SgBuffer::from_segments(segments)).is_ok());
    }
}

fn finish<P: Protocol, B: DdpBackend>(e: &mut Engine<P, B>, out: &mut Outcome) {
    drain(e, out);
    e.teardown_all();
    for _ in 0..4 {
        drain(e, out);
    }
    out.released.sort_by_key(|(t, _)| *t);
}

fn config(hd: bool, dd: bool) -> QueueConfig {
    QueueConfig::new(ulp_nvme_tcp::NVME_TCP, QueueId(1))
        .with_digests(hd, dd)
        .with_queue_depth(64)
}

fn software(w: &Workload, hd: bool, dd: bool) -> Outcome {
    let mut e = Engine::new(
        <NvmeTcpHost as KitProtocol>::with_digests(hd, dd),
        SwBackend::new(),
        config(hd, dd),
        EngineOptions::default(),
    );
    register(&mut e, w);
    let mut out = Outcome::default();
    for piece in w.stream.chunks(4096) {
        if let Err(err) = e.receive(Piece::bytes(piece)) {
            out.fatal = Some(err);
            break;
        }
        drain(&mut e, &mut out);
    }
    finish(&mut e, &mut out);
    out
}

/// How the network treats the segments (percentages per segment).
#[derive(Clone, Copy, Debug)]
struct Network {
    mss: usize,
    loss: u64,
    dup: u64,
    reorder: u64,
}

/// The segments as delivered: (stream offset, end), in delivery order. Every byte is delivered
/// at least once; lost segments come back later, possibly cut differently.
fn schedule(len: usize, net: Network, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut segs = Vec::new();
    let mut at = 0;
    while at < len {
        let n = (net.mss / 2 + 1 + rng.below(net.mss as u64 / 2 + 1) as usize).min(len - at);
        segs.push((at, at + n));
        at += n;
    }
    let mut out = Vec::new();
    let mut lost: Vec<(usize, (usize, usize))> = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        let seg = segs[i];
        let r = rng.below(100);
        if r < net.loss {
            lost.push((out.len() + 1 + rng.below(30) as usize, seg));
        } else if r < net.loss + net.dup {
            out.push(seg);
            out.push(seg);
        } else if r < net.loss + net.dup + net.reorder && i + 1 < segs.len() {
            out.push(segs[i + 1]);
            out.push(seg);
            i += 1;
        } else {
            out.push(seg);
        }
        i += 1;
        // Retransmit what is due, sometimes cut in two.
        let due: Vec<(usize, usize)> = lost
            .iter()
            .filter(|(when, _)| *when <= out.len())
            .map(|(_, s)| *s)
            .collect();
        lost.retain(|(when, _)| *when > out.len());
        for (a, b) in due {
            if b - a > 1 && rng.below(2) == 0 {
                let m = a + 1 + rng.below((b - a - 1) as u64) as usize;
                out.push((m, b));
                out.push((a, m));
            } else {
                out.push((a, b));
            }
        }
    }
    out.extend(lost.into_iter().map(|(_, s)| s));
    out
}

fn mlx5(w: &Workload, hd: bool, dd: bool, net: Network, isn: u32, rng: &mut Rng) -> Outcome {
    let mut nic = Nic::new(
        <NvmeTcpHost as KitProtocol>::with_digests(hd, dd),
        Model::new(),
        config(hd, dd).with_rx_seq(TcpSeq(isn)),
        EngineOptions::default(),
    );
    register(nic.engine_mut(), w);
    let mut out = Outcome::default();
    for (a, b) in schedule(w.stream.len(), net, rng) {
        let seq = TcpSeq(isn.wrapping_add(a as u32));
        if let Err(err) = nic.deliver(seq, &w.stream[a..b]) {
            out.fatal = Some(err);
            break;
        }
        drain(nic.engine_mut(), &mut out);
    }
    assert_eq!(
        nic.stats().dma_missed,
        0,
        "every DMA write found its buffer"
    );
    assert_eq!(nic.reassembly().held_bytes(), 0, "every byte delivered");
    finish(nic.engine_mut(), &mut out);
    out
}

/// Cases when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 64;

/// The property's configuration: `ProptestConfig::default()` reads the `PROPTEST_*`
/// environment variables (`PROPTEST_CASES`, `PROPTEST_MAX_SHRINK_ITERS`, ...); only when
/// `PROPTEST_CASES` is unset does the case count fall back to [`DEFAULT_CASES`]
/// (proptest's own default, 256, is too slow for every `cargo test`).
///
/// A long run, e.g. 20,000 cases (the workspace's test profile is optimized; about 18 s on
/// one core):
///
/// ```text
/// PROPTEST_CASES=20000 cargo test -p ulp-backend-mlx5 --test equivalence
/// ```
fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

#[test]
fn the_case_count_comes_from_proptest_cases() {
    let expected = match std::env::var("PROPTEST_CASES") {
        Ok(value) => value.parse().expect("PROPTEST_CASES is a number"),
        Err(_) => DEFAULT_CASES,
    };
    assert_eq!(proptest_config().cases, expected);
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn mlx5_and_software_backends_are_interchangeable(
        seed in any::<u64>(),
        hd in any::<bool>(),
        dd in any::<bool>(),
        corrupt in any::<bool>(),
        mss in 64usize..9000,
        loss in 0u64..8,
        dup in 0u64..8,
        reorder in 0u64..8,
        isn in any::<u32>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut protocol = <NvmeTcpHost as KitProtocol>::with_digests(hd, dd);
        let w = Workload::generate(&mut protocol, &mut rng, 4, 100_000, corrupt && dd);
        let sw = software(&w, hd, dd);
        prop_assert!(sw.fatal.is_none());
        let net = Network { mss, loss, dup, reorder };
        let hw = mlx5(&w, hd, dd, net, isn, &mut rng);
        prop_assert_eq!(&hw.seen, &sw.seen);
        prop_assert_eq!(&hw.fatal, &sw.fatal);
        prop_assert_eq!(hw.released.len(), sw.released.len());
        for (h, s) in hw.released.iter().zip(&sw.released) {
            prop_assert_eq!(h.0, s.0);
            prop_assert!(h.1 == s.1, "{}: buffers differ", h.0);
        }
    }
}

/// The proptest's workloads do exercise placement: a fixed case with every fault, checked for
/// placed bytes, a resync and agreement.
#[test]
fn a_faulty_network_still_places_and_agrees() {
    let mut rng = Rng::new(7);
    let mut protocol = <NvmeTcpHost as KitProtocol>::with_digests(true, true);
    let w = Workload::generate(&mut protocol, &mut rng, 6, 200_000, true);
    let sw = software(&w, true, true);
    let net = Network {
        mss: 1460,
        loss: 5,
        dup: 5,
        reorder: 5,
    };
    let isn = u32::MAX - 100_000;
    let mut nic = Nic::new(
        <NvmeTcpHost as KitProtocol>::with_digests(true, true),
        Model::new(),
        config(true, true).with_rx_seq(TcpSeq(isn)),
        EngineOptions::default(),
    );
    register(nic.engine_mut(), &w);
    let mut out = Outcome::default();
    for (a, b) in schedule(w.stream.len(), net, &mut rng) {
        nic.deliver(TcpSeq(isn.wrapping_add(a as u32)), &w.stream[a..b])
            .unwrap();
        drain(nic.engine_mut(), &mut out);
    }
    let placed = nic.engine().stats().bytes_placed;
    let requests = nic.engine().stats().resync_requests;
    finish(nic.engine_mut(), &mut out);
    assert_eq!(out, sw);
    assert!(placed > 0, "the device placed nothing");
    assert!(requests > 0, "no header was lost: pick another seed");
    assert!(!w.corrupted.is_empty());
}
