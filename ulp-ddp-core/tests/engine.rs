//! The receive engine against the toy protocol: framing under every cut, digests, hostile
//! input, asynchronous teardown, resync, backend-placed pieces and the reader path.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use ulp_ddp_core::digest::Crc32c;
use ulp_ddp_core::testkit::{self, KitProtocol, Rng, Workload};
use ulp_ddp_core::{
    BackendError, BackendEvent, DataError, DdpBackend, DdpIo, DigestOffload, DigestStatus, Engine,
    EngineOptions, Error, Event, Limits, NoOffload, Piece, ProtocolId, QueueConfig, QueueId,
    ReadTarget, SetupOutcome, SgBuffer, Stats, Tag, TcpSeq,
};

use ulp_testbed::toy::{TOY, Toy};

/// A scripted device: maps everything, completes teardowns only when told, raises resync
/// requests on demand and records the answers.
#[derive(Default)]
struct Script {
    queues: HashMap<QueueId, ()>,
    mapped: HashMap<Tag, u64>,
    pending_teardowns: Vec<Tag>,
    events: VecDeque<BackendEvent>,
    answers: Vec<(TcpSeq, bool)>,
    hold_teardowns: bool,
    /// Teardowns to refuse with `NoResources` before accepting.
    refuse_teardowns: u32,
    stats: Stats,
}

impl Script {
    fn complete_teardowns(&mut self) {
        for tag in self.pending_teardowns.drain(..) {
            self.mapped.remove(&tag);
            self.events.push_back(BackendEvent::TeardownDone { tag });
        }
    }
}

impl DdpBackend for Script {
    fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
        (protocol == TOY).then(|| {
            let mut limits = Limits::unlimited(TOY);
            limits.digests = DigestOffload::new(false, true);
            limits
        })
    }
    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        if self.queues.insert(config.queue_id, ()).is_some() {
            return Err(BackendError::QueueExists(config.queue_id));
        }
        self.stats.queues_added += 1;
        Ok(())
    }
    fn queue_del(&mut self, queue: QueueId) {
        if self.queues.remove(&queue).is_some() {
            self.stats.queues_deleted += 1;
        }
    }
    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        if !self.queues.contains_key(&queue) {
            return Err(BackendError::UnknownQueue(queue));
        }
        if self.mapped.contains_key(&io.tag) {
            self.stats.setup_failures += 1;
            return Err(BackendError::TagBusy(io.tag));
        }
        self.mapped.insert(io.tag, io.buffer.len());
        self.stats.setups += 1;
        Ok(())
    }
    fn teardown(&mut self, _queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        if !self.mapped.contains_key(&tag) {
            return Err(BackendError::UnknownTag(tag));
        }
        if self.refuse_teardowns > 0 {
            self.refuse_teardowns -= 1;
            return Err(BackendError::NoResources);
        }
        self.stats.teardowns += 1;
        self.pending_teardowns.push(tag);
        if !self.hold_teardowns {
            self.complete_teardowns();
        }
        Ok(())
    }
    fn resync_response(&mut self, _queue: QueueId, seq: TcpSeq, ok: bool) {
        self.answers.push((seq, ok));
    }
    fn poll_event(&mut self, _queue: QueueId) -> Option<BackendEvent> {
        self.events.pop_front()
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        ulp_ddp_core::digest::copy_with_crc(dst, src, crc);
    }
}

fn cfg(hd: bool, dd: bool) -> QueueConfig {
    QueueConfig::new(TOY, QueueId(1)).with_digests(hd, dd)
}

fn sw(hd: bool, dd: bool) -> Engine<Toy, NoOffload> {
    Engine::new(
        Toy::new(hd, dd),
        NoOffload,
        cfg(hd, dd),
        EngineOptions::default(),
    )
}

fn scripted(hd: bool, dd: bool) -> Engine<Toy, Script> {
    Engine::new(
        Toy::new(hd, dd),
        Script::default(),
        cfg(hd, dd),
        EngineOptions::default(),
    )
}

fn events<P: ulp_ddp_core::Protocol, B: DdpBackend>(e: &mut Engine<P, B>) -> Vec<Event<P>> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// Three PDUs: control with data, data for tag 1 (split in two PDUs), control without data.
fn small_stream(toy: &Toy) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..37u8).collect();
    let mut s = toy.encode_control(b"hello");
    s.extend(toy.encode_data(Tag(1), 0, &data[..21]));
    s.extend(toy.encode_data(Tag(1), 21, &data[21..]));
    s.extend(toy.encode_control(b""));
    (s, data)
}

fn run_split(toy: &Toy, pieces: &[&[u8]]) -> (Vec<u8>, Vec<DigestStatus>, Vec<Vec<u8>>) {
    let mut e = sw(toy.header_digest, toy.data_digest);
    e.setup(
        Tag(1),
        SgBuffer::from_segments(vec![vec![0; 10], vec![0; 27]]),
    )
    .unwrap();
    for p in pieces {
        e.receive(Piece::bytes(p)).unwrap();
    }
    e.teardown(Tag(1)).unwrap();
    let (mut buf, mut verdicts, mut control) = (None, Vec::new(), Vec::new());
    for ev in events(&mut e) {
        match ev {
            Event::Data { digest, .. } => verdicts.push(digest),
            Event::Control { data, digest, .. } => {
                verdicts.push(digest);
                control.push(data);
            }
            Event::Released { buffer, .. } => buf = Some(buffer.into_vec()),
            Event::Error(err) => panic!("{err}"),
            other => panic!("{other:?}"),
        }
    }
    (buf.unwrap(), verdicts, control)
}

#[test]
fn split_at_every_byte_boundary() {
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        let toy = Toy::new(hd, dd);
        let (stream, data) = small_stream(&toy);
        let whole = run_split(&toy, &[&stream]);
        assert_eq!(whole.0, data);
        assert_eq!(whole.2, vec![b"hello".to_vec(), Vec::new()]);
        let want_digest = if dd {
            DigestStatus::Computed
        } else {
            DigestStatus::Absent
        };
        assert_eq!(whole.1[1], want_digest);
        for k in 0..=stream.len() {
            let (a, b) = stream.split_at(k);
            assert_eq!(run_split(&toy, &[a, b]), whole, "split at {k}");
        }
        for i in 0..stream.len() {
            for j in i..=stream.len() {
                let pieces = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(run_split(&toy, &pieces), whole, "split at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run_split(&toy, &bytes), whole, "one byte at a time");
    }
}

#[test]
fn corrupted_data_digest_is_a_verdict_not_an_error() {
    let toy = Toy::new(false, true);
    let mut pdu = toy.encode_data(Tag(0), 0, b"abcdefg");
    let digest_at = pdu.len() - 4;
    pdu[digest_at] ^= 1;
    let mut e = sw(false, true);
    e.setup(Tag(0), SgBuffer::zeroed(7)).unwrap();
    e.receive(Piece::bytes(&pdu)).unwrap();
    match e.poll_event() {
        Some(Event::Data {
            digest: DigestStatus::Mismatch { computed, received },
            ..
        }) => assert_eq!(computed ^ 1, received),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.stats().digests_failed, 1);
    // Corrupted pad bytes are covered too.
    let mut pdu = toy.encode_data(Tag(1), 0, b"abcdefg");
    let pad_at = pdu.len() - 5;
    pdu[pad_at] = 9;
    e.setup(Tag(1), SgBuffer::zeroed(7)).unwrap();
    e.receive(Piece::bytes(&pdu)).unwrap();
    assert!(matches!(
        e.poll_event(),
        Some(Event::Data {
            digest: DigestStatus::Mismatch { .. },
            ..
        })
    ));
}

#[test]
fn header_digest_mismatch_is_fatal() {
    let toy = Toy::new(true, false);
    let mut pdu = toy.encode_control(b"x");
    pdu[17] ^= 0xFF;
    let mut e = sw(true, false);
    let err = e.receive(Piece::bytes(&pdu)).unwrap_err();
    assert!(matches!(err, Error::HeaderDigest { .. }));
    assert!(err.is_fatal());
    assert_eq!(e.receive(Piece::bytes(b"more")), Err(Error::Failed));
    assert!(e.is_failed());
}

#[test]
fn invalid_headers_are_fatal_typed_errors() {
    let mut e = sw(false, false);
    let err = e.receive(Piece::bytes(&[7, 0, 16, 0])).unwrap_err();
    assert_eq!(
        err,
        Error::Protocol(ulp_ddp_core::HeaderError::UnknownType(7))
    );

    // A control PDU claiming 4 GiB of data.
    let mut e = sw(false, false);
    let mut h = vec![1, 0, 16, 16];
    h.extend(u32::MAX.to_le_bytes());
    h.extend([0; 8]);
    let err = e.receive(Piece::bytes(&h)).unwrap_err();
    assert!(matches!(err, Error::ControlTooLarge { .. }));

    // Data offset inside the header.
    let mut e = sw(false, false);
    let mut h = vec![2, 0, 16, 4];
    h.extend(8u32.to_le_bytes());
    h.extend([0; 8]);
    assert!(matches!(
        e.receive(Piece::bytes(&h)),
        Err(Error::Protocol(_))
    ));
}

/// Data the tag table refuses is discarded undigested: it has no verdict and counts as
/// neither a computed nor a failed digest, however good its digest is.
#[test]
fn refused_data_is_no_digest_failure() {
    let toy = Toy::new(false, true);
    let mut e = sw(false, true);
    e.setup(Tag(1), SgBuffer::zeroed(8)).unwrap();
    let mut s = toy.encode_data(Tag(9), 0, b"unknown tag");
    s.extend(toy.encode_data(Tag(1), 4, b"too long for the buffer"));
    s.extend(toy.encode_data(Tag(1), 0, b"fits"));
    e.receive(Piece::bytes(&s)).unwrap();
    let evs = events(&mut e);
    assert!(matches!(
        evs[0],
        Event::Error(DataError::UnknownTag(Tag(9)))
    ));
    assert!(matches!(
        evs[1],
        Event::Error(DataError::OutOfRange { tag: Tag(1), .. })
    ));
    assert!(matches!(
        evs[2],
        Event::Data {
            digest: DigestStatus::Computed,
            ..
        }
    ));
    let st = e.stats();
    assert_eq!((st.digests_computed, st.digests_failed), (1, 0));
}

#[test]
fn hostile_data_with_overflowing_lengths_touches_nothing() {
    let toy = Toy::new(false, false);
    let mut e = sw(false, false);
    e.setup(Tag(0), SgBuffer::from_vec(vec![0xEE; 100]))
        .unwrap();
    // Offset near u32::MAX plus a length that wraps a u32 sum.
    let mut h = vec![2, 0, 16, 16];
    h.extend(0x20u32.to_le_bytes());
    h.extend(0u32.to_le_bytes());
    h.extend((u32::MAX - 0x10).to_le_bytes());
    h.extend([0xAB; 0x20]);
    h.extend(toy.encode_data(Tag(0), 0, b"ok"));
    e.receive(Piece::bytes(&h)).unwrap();
    let evs = events(&mut e);
    assert!(matches!(
        evs[0],
        Event::Error(DataError::OutOfRange { tag: Tag(0), .. })
    ));
    assert!(matches!(evs[1], Event::Data { len: 2, .. }));
    e.teardown(Tag(0)).unwrap();
    let Some(Event::Released { buffer, .. }) = e.poll_event() else {
        panic!()
    };
    let mut want = vec![0xEE; 100];
    want[..2].copy_from_slice(b"ok");
    assert_eq!(buffer.into_vec(), want);
}

#[test]
fn conformance_kit_passes_on_no_offload_and_script() {
    testkit::run_all::<NoOffload, Toy>(|| NoOffload);
    testkit::run_all::<Script, Toy>(Script::default);
}

#[test]
fn async_teardown_keeps_the_buffer_until_completion() {
    let toy = Toy::new(false, false);
    let mut e = scripted(false, false);
    e.backend_mut().hold_teardowns = true;
    assert_eq!(
        e.setup(Tag(4), SgBuffer::zeroed(16)).unwrap(),
        SetupOutcome::Offloaded
    );
    e.teardown(Tag(4)).unwrap();
    assert!(
        e.poll_event().is_none(),
        "not released before the device completes"
    );
    // Late data for the finished command is refused without a write.
    e.receive(Piece::bytes(&toy.encode_data(Tag(4), 0, b"late")))
        .unwrap();
    assert!(matches!(
        e.poll_event(),
        Some(Event::Error(DataError::TagFinished(Tag(4))))
    ));
    assert!(matches!(
        e.setup(Tag(4), SgBuffer::zeroed(1)),
        Err((Error::TagInUse(Tag(4)), _))
    ));
    e.backend_mut().complete_teardowns();
    match e.poll_event() {
        Some(Event::Released {
            tag,
            buffer,
            offloaded,
        }) => {
            assert_eq!(tag, Tag(4));
            assert!(offloaded);
            assert_eq!(buffer.into_vec(), vec![0; 16]);
        }
        other => panic!("{other:?}"),
    }
}

/// Feeds `pdu` as a device would: header bytes as bytes, data as placed (written through
/// `dma_buffer`), the rest as bytes; `ok` is the device's digest verdict for each part.
fn feed_placed(
    e: &mut Engine<Toy, Script>,
    pdu: &[u8],
    tag: Tag,
    offset: u64,
    data_at: usize,
    data_len: usize,
    ok: [bool; 2],
) {
    let data = &pdu[data_at..data_at + data_len];
    e.dma_buffer(tag).unwrap().write_at(offset, data).unwrap();
    e.receive(Piece::bytes(&pdu[..data_at])).unwrap();
    let half = data_len / 2;
    e.receive(Piece::Placed {
        tag,
        offset,
        len: half as u32,
        digest_ok: ok[0],
    })
    .unwrap();
    e.receive(Piece::Placed {
        tag,
        offset: offset + half as u64,
        len: (data_len - half) as u32,
        digest_ok: ok[1],
    })
    .unwrap();
    e.receive(Piece::Bytes {
        data: &pdu[data_at + data_len..],
        digest_ok: ok[1],
    })
    .unwrap();
}

#[test]
fn placed_pieces_skip_the_copy_and_trust_the_device_only_when_it_vouches() {
    let toy = Toy::new(false, true);
    let data: Vec<u8> = (0..64u8).collect();
    let pdu = toy.encode_data(Tag(2), 0, &data);
    for (ok, want) in [
        ([true, true], DigestStatus::Offloaded),
        ([false, true], DigestStatus::Computed),
        ([true, false], DigestStatus::Computed),
        ([false, false], DigestStatus::Computed),
    ] {
        let mut e = scripted(false, true);
        e.setup(Tag(2), SgBuffer::zeroed(64)).unwrap();
        feed_placed(&mut e, &pdu, Tag(2), 0, 16, 64, ok);
        match e.poll_event() {
            Some(Event::Data { digest, .. }) => assert_eq!(digest, want, "{ok:?}"),
            other => panic!("{other:?}"),
        }
        let s = e.stats();
        assert_eq!((s.bytes_placed, s.bytes_copied), (64, 0));
    }
    // The device placed corrupted data and did not vouch: the recompute over the buffer catches it.
    let mut bad = pdu;
    bad[20] ^= 1;
    let mut e = scripted(false, true);
    e.setup(Tag(2), SgBuffer::zeroed(64)).unwrap();
    feed_placed(&mut e, &bad, Tag(2), 0, 16, 64, [true, false]);
    assert!(matches!(
        e.poll_event(),
        Some(Event::Data {
            digest: DigestStatus::Mismatch { .. },
            ..
        })
    ));
}

#[test]
fn placed_bytes_outside_data_break_the_contract() {
    let mut e = scripted(false, false);
    let err = e
        .receive(Piece::Placed {
            tag: Tag(1),
            offset: 0,
            len: 4,
            digest_ok: true,
        })
        .unwrap_err();
    assert!(matches!(err, Error::BackendViolation(_)));
    // Placed where the stream does not put them: another command, or another offset.
    let toy = Toy::new(false, false);
    let pdu = toy.encode_data(Tag(1), 8, b"12345678");
    for (tag, offset) in [(Tag(2), 8), (Tag(1), 0), (Tag(1), 9)] {
        let mut e = scripted(false, false);
        e.setup(Tag(1), SgBuffer::zeroed(16)).unwrap();
        e.setup(Tag(2), SgBuffer::zeroed(16)).unwrap();
        e.receive(Piece::bytes(&pdu[..16])).unwrap();
        let err = e
            .receive(Piece::Placed {
                tag,
                offset,
                len: 8,
                digest_ok: true,
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::BackendViolation(_)),
            "{tag} at {offset}"
        );
    }
    // Placed bytes for a command the backend did not map.
    let toy = Toy::new(false, false);
    let mut e = sw(false, false);
    e.setup(Tag(1), SgBuffer::zeroed(8)).unwrap();
    let pdu = toy.encode_data(Tag(1), 0, b"12345678");
    e.receive(Piece::bytes(&pdu[..16])).unwrap();
    assert!(matches!(
        e.receive(Piece::Placed {
            tag: Tag(1),
            offset: 0,
            len: 8,
            digest_ok: true
        }),
        Err(Error::BackendViolation(_))
    ));
}

#[test]
fn resync_requests_are_answered_at_the_right_place() {
    let toy = Toy::new(false, false);
    let a = toy.encode_control(b"0123456789");
    let b = toy.encode_data(Tag(0), 0, &[5; 40]);
    let c = toy.encode_control(b"");
    let mut stream = a.clone();
    stream.extend(&b);
    stream.extend(&c);
    let start = TcpSeq(u32::MAX - 20); // wraps inside the stream
    let b_at = start.wrapping_add(a.len() as u32);
    let c_at = b_at.wrapping_add(b.len() as u32);
    let config = cfg(false, false).with_rx_seq(start);
    let mut e = Engine::new(toy, Script::default(), config, EngineOptions::default());
    e.setup(Tag(0), SgBuffer::zeroed(40)).unwrap();
    // Ahead, at a PDU start: confirmed when the stream reaches it.
    e.backend_mut()
        .events
        .push_back(BackendEvent::ResyncRequest { seq: b_at });
    e.receive(Piece::bytes(&stream[..5])).unwrap();
    assert!(e.backend().answers.is_empty());
    e.receive(Piece::bytes(&stream[5..a.len() + 3])).unwrap();
    assert_eq!(e.backend().answers, vec![(b_at, true)]);
    // Ahead, mid-PDU: refused when the next PDU starts past it.
    e.backend_mut()
        .events
        .push_back(BackendEvent::ResyncRequest {
            seq: b_at.wrapping_add(7),
        });
    e.receive(Piece::bytes(&stream[a.len() + 3..a.len() + b.len() + 1]))
        .unwrap();
    assert_eq!(e.backend().answers[1], (b_at.wrapping_add(7), false));
    // Behind, at a PDU start the engine remembers: confirmed at once.
    e.backend_mut()
        .events
        .push_back(BackendEvent::ResyncRequest { seq: start });
    e.receive(Piece::bytes(&stream[a.len() + b.len() + 1..]))
        .unwrap();
    assert_eq!(e.backend().answers[2], (start, true));
    // Exactly here, between PDUs: confirmed.
    assert_eq!(e.next_seq(), c_at.wrapping_add(c.len() as u32));
    let here = e.next_seq();
    e.backend_mut()
        .events
        .push_back(BackendEvent::ResyncRequest { seq: here });
    assert!(e.poll_event().is_some()); // the data event
    let _ = events(&mut e);
    assert_eq!(
        e.backend().answers[3],
        (c_at.wrapping_add(c.len() as u32), true)
    );
    let s = e.stats();
    assert_eq!(
        (s.resync_requests, s.resync_confirmed, s.resync_refused),
        (4, 3, 1)
    );
}

#[test]
fn reader_path_reads_payload_straight_into_the_buffer() {
    let toy = Toy::new(true, true);
    let mut rng = Rng::new(5);
    let mut toy = toy;
    let w = Workload::generate(&mut toy, &mut rng, 3, 50_000, false);
    let mut e = sw(true, true);
    for c in &w.commands {
        let segs = c.segments.iter().map(|&n| vec![0; n]).collect();
        e.setup(c.tag, SgBuffer::from_segments(segs)).unwrap();
    }
    let mut src = std::io::Cursor::new(w.stream.clone());
    let mut scratch = vec![0u8; 256];
    let mut reads = 0;
    while (src.position() as usize) < w.stream.len() {
        reads += 1;
        assert!(reads < 100_000, "bounded");
        match e.read_target() {
            ReadTarget::InPlace(window) => {
                let n = std::io::Read::read(&mut src, window).unwrap();
                e.commit_in_place(n).unwrap();
            }
            ReadTarget::Bytes(max) => {
                let max = max.min(scratch.len());
                let n = std::io::Read::read(&mut src, &mut scratch[..max]).unwrap();
                e.receive(Piece::bytes(&scratch[..n])).unwrap();
            }
        }
    }
    e.teardown_all();
    let mut got = Vec::new();
    for ev in events(&mut e) {
        match ev {
            Event::Released { tag, buffer, .. } => got.push((tag, buffer.into_vec())),
            Event::Data { digest, .. } | Event::Control { digest, .. } => {
                assert!(digest.is_ok());
            }
            Event::Error(err) => panic!("{err}"),
            other => panic!("{other:?}"),
        }
    }
    got.sort_by_key(|(t, _)| *t);
    assert_eq!(got.len(), w.commands.len(), "every buffer comes back");
    for (c, (_, data)) in w.commands.iter().zip(&got) {
        assert!(c.data == *data);
    }
    let s = e.stats();
    let payload: u64 = w.commands.iter().map(|c| c.data.len() as u64).sum();
    assert_eq!(s.bytes_read_in_place, payload, "all payload read in place");
    assert_eq!(s.bytes_copied, 0, "no payload through the scratch buffer");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random toy streams cut into random pieces: buffers equal the reference and verdicts are
    /// right, corrupted digests included.
    #[test]
    fn random_streams_random_cuts(
        seed in any::<u64>(),
        hd in any::<bool>(),
        dd in any::<bool>(),
        corrupt in any::<bool>(),
        max_piece in 1usize..5000,
    ) {
        let mut toy = Toy::new(hd, dd);
        let mut rng = Rng::new(seed);
        let w = Workload::generate(&mut toy, &mut rng, 3, 9000, corrupt && dd);
        let pieces = testkit::cut(&w.stream, &mut rng, max_piece);
        let mut e = sw(hd, dd);
        let out = testkit::run_pieces(&mut e, &w, &pieces);
        testkit::assert_matches_reference(&w, &out);
    }
}

#[test]
fn a_refused_teardown_keeps_the_buffer_until_the_device_lets_go() {
    let mut e = scripted(false, false);
    e.backend_mut().refuse_teardowns = 5;
    e.setup(Tag(1), SgBuffer::zeroed(8)).unwrap();
    e.teardown(Tag(1)).unwrap();
    // Refused (out of resources): still mapped, so never released before the backend accepts;
    // retried on each poll.
    let mut polls = 0;
    let released = loop {
        polls += 1;
        assert!(polls < 20, "bounded");
        match e.poll_event() {
            Some(Event::Released { tag, .. }) => break tag,
            Some(other) => panic!("{other:?}"),
            None => assert!(e.backend().mapped.contains_key(&Tag(1)), "still mapped"),
        }
    };
    assert_eq!(released, Tag(1));
    assert!(polls > 1, "the refusals delayed the release");
    assert!(!e.backend().mapped.contains_key(&Tag(1)));
}

#[test]
fn commit_in_place_cannot_pass_the_offered_window() {
    let toy = Toy::new(false, false);
    let pdu = toy.encode_data(Tag(1), 0, &[7; 32]);
    let mut e = sw(false, false);
    e.setup(
        Tag(1),
        SgBuffer::from_segments(vec![vec![0; 16], vec![0; 16]]),
    )
    .unwrap();
    e.receive(Piece::bytes(&pdu[..16])).unwrap();
    match e.read_target() {
        ReadTarget::InPlace(w) => {
            assert_eq!(w.len(), 16, "one segment at a time");
            w.fill(7);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.commit_in_place(32),
        Err(Error::BackendViolation(_))
    ));
    // Without an offer, nothing can be committed either.
    let mut e = sw(false, false);
    e.setup(Tag(1), SgBuffer::zeroed(32)).unwrap();
    e.receive(Piece::bytes(&pdu[..16])).unwrap();
    assert!(e.commit_in_place(1).is_err());
}

#[test]
fn scattered_data_is_refused_past_a_bound() {
    let toy = Toy::new(false, false);
    let mut e = sw(false, false);
    e.setup(Tag(0), SgBuffer::zeroed(4096)).unwrap();
    let mut stream = Vec::new();
    // One-byte PDUs at descending, non-adjacent offsets.
    for k in 0..100u64 {
        stream.extend(toy.encode_data(Tag(0), 4000 - 2 * k, b"x"));
    }
    e.receive(Piece::bytes(&stream)).unwrap();
    let errors: Vec<DataError> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Error(err) => Some(err),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 100 - 64);
    assert!(
        errors
            .iter()
            .all(|e| *e == DataError::TooFragmented { tag: Tag(0) })
    );
}

#[test]
fn reconfigure_re_offers_the_queue_between_pdus_only() {
    let toy = Toy::new(false, false);
    let mut e = scripted(false, false);
    assert!(e.is_offloaded());
    e.receive(Piece::bytes(&toy.encode_control(b"login")[..6]))
        .unwrap();
    let digests_on = e.config().with_digests(true, true);
    assert_eq!(e.reconfigure(digests_on), Err(Error::Busy), "mid-PDU");
    e.receive(Piece::bytes(&toy.encode_control(b"login")[6..]))
        .unwrap();
    e.setup(Tag(1), SgBuffer::zeroed(4)).unwrap();
    assert_eq!(
        e.reconfigure(digests_on),
        Err(Error::Busy),
        "a command holds a buffer"
    );
    e.teardown(Tag(1)).unwrap();
    let _ = events(&mut e);
    let here = e.next_seq();
    assert_eq!(e.reconfigure(digests_on), Ok(true));
    assert!(e.config().data_digest && e.config().header_digest);
    assert_eq!(e.config().rx_seq, here, "the device starts at the next PDU");
    let s = e.backend().stats();
    assert_eq!((s.queues_added, s.queues_deleted), (2, 1));
}
