//! The conformance kit: the checks every backend runs from its own tests (feature `testkit`).
//!
//! The kit drives a backend through an [`Engine`] with a protocol the caller supplies (any
//! [`KitProtocol`]: a plugin that can also encode the PDUs it frames), and compares what lands
//! in the buffers with a plain reference: the bytes the generator put into each PDU. Every check
//! panics with a message naming what broke, as a test should.
//!
//! A backend crate runs the whole kit from one test, with `ulp-ddp-core` (feature `testkit`)
//! and a [`KitProtocol`] among its dev-dependencies; `run_all` calls the closure for a fresh
//! backend whenever a check needs one. Here the backend is [`NoOffload`](crate::NoOffload) and
//! the protocol the repository test bed's toy (`ulp_testbed::toy::Toy`, an 8-byte header with
//! optional CRC32C digests); `ulp-nvme-tcp`'s `NvmeTcpHost` is a `KitProtocol` too. The
//! repository's `examples/custom_backend.rs` writes a backend of its own and runs it this way.
//!
//! ```
//! // tests/conformance.rs of a backend crate (with MyBackend::new for NoOffload):
//! use ulp_ddp_core::{NoOffload, testkit};
//! use ulp_testbed::toy::Toy;
//!
//! # // A doc test drops `#[test]` functions: the attribute is shown, not compiled, and the
//! # // function is called below.
//! # /*
//! #[test]
//! # */
//! fn conformance() {
//!     testkit::run_all::<NoOffload, Toy>(|| NoOffload);
//! }
//! # conformance();
//! ```

use crate::{
    BackendError, DataError, DdpBackend, Decline, DigestStatus, Engine, EngineOptions, Error,
    Event, Piece, Protocol, QueueConfig, QueueId, SetupOutcome, SgBuffer, Tag, TcpSeq,
};

/// A protocol plugin that can also produce the PDUs it frames, for the kit's generators.
pub trait KitProtocol: Protocol + Sized {
    /// A plugin for a connection with these digests negotiated.
    fn with_digests(header: bool, data: bool) -> Self;

    /// One PDU carrying `data` for `tag`'s buffer at `offset` (a read-data PDU).
    fn encode_data(&self, tag: Tag, offset: u64, data: &[u8]) -> Vec<u8>;

    /// One PDU whose `data` is for the caller, not for a buffer (a response, a status, a
    /// message).
    fn encode_control(&self, data: &[u8]) -> Vec<u8>;

    /// Largest data length one PDU may carry.
    fn max_data_len(&self) -> usize {
        64 * 1024
    }
}

/// A small deterministic generator (xorshift64*), so that failures reproduce from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One command of a generated workload.
#[derive(Clone, Debug)]
pub struct Command {
    /// Its tag.
    pub tag: Tag,
    /// The data the target sends for it: the reference result.
    pub data: Vec<u8>,
    /// Segment lengths of the buffer registered for it.
    pub segments: Vec<usize>,
}

/// A generated stream: commands, the PDUs carrying their data (and control PDUs between them),
/// and what the engine must report.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The commands.
    pub commands: Vec<Command>,
    /// The whole byte stream.
    pub stream: Vec<u8>,
    /// Per PDU, in stream order: `Some(tag)` for data PDUs, `None` for control PDUs.
    pub pdus: Vec<Option<Tag>>,
    /// Per PDU, in stream order: how many data bytes it carries (control PDUs too).
    pub data_lens: Vec<usize>,
    /// Data of each control PDU, in order.
    pub control: Vec<Vec<u8>>,
    /// Index (in `pdus`) of PDUs whose data digest was corrupted.
    pub corrupted: Vec<usize>,
}

impl Workload {
    /// Generates `commands` commands of up to `max_len` bytes each, their data split into PDUs
    /// of random sizes and interleaved between commands, with control PDUs between them. When
    /// `corrupt` and the protocol has data digests, some PDUs get a flipped data byte.
    pub fn generate<P: KitProtocol>(
        protocol: &mut P,
        rng: &mut Rng,
        commands: usize,
        max_len: usize,
        corrupt: bool,
    ) -> Self {
        let mut cmds = Vec::new();
        for i in 0..commands {
            let len = 1 + rng.below(max_len as u64) as usize;
            let mut segments = Vec::new();
            let mut left = len;
            while left > 0 {
                let s = if rng.below(3) == 0 {
                    1 + rng.below(left as u64) as usize
                } else {
                    left
                };
                segments.push(s);
                left -= s;
            }
            cmds.push(Command {
                tag: Tag(i as u32),
                data: rng.bytes(len),
                segments,
            });
        }
        // Each command's PDUs in order; commands interleaved at random.
        let mut cursors = vec![0usize; cmds.len()];
        let mut stream = Vec::new();
        let mut pdus = Vec::new();
        let mut data_lens = Vec::new();
        let mut control = Vec::new();
        let mut corrupted = Vec::new();
        loop {
            let open: Vec<usize> = (0..cmds.len())
                .filter(|&i| cursors[i] < cmds[i].data.len())
                .collect();
            if open.is_empty() {
                break;
            }
            if rng.below(5) == 0 {
                let n = rng.below(40) as usize;
                let data = rng.bytes(n);
                stream.extend_from_slice(&protocol.encode_control(&data));
                data_lens.push(data.len());
                control.push(data);
                pdus.push(None);
            }
            let i = open[rng.below(open.len() as u64) as usize];
            let cmd = &cmds[i];
            let left = cmd.data.len() - cursors[i];
            let max = left.min(protocol.max_data_len());
            let n = 1 + rng.below(max as u64) as usize;
            let chunk = &cmd.data[cursors[i]..cursors[i] + n];
            let mut pdu = protocol.encode_data(cmd.tag, cursors[i] as u64, chunk);
            if corrupt && rng.below(4) == 0 {
                // Flip a data byte, found through the protocol's own framing.
                if let Some(start) = data_offset(protocol, &pdu) {
                    let at = start + rng.below(n as u64) as usize;
                    pdu[at] ^= 0x5A;
                    corrupted.push(pdus.len());
                }
            }
            stream.extend_from_slice(&pdu);
            pdus.push(Some(cmd.tag));
            data_lens.push(n);
            cursors[i] += n;
        }
        Self {
            commands: cmds,
            stream,
            pdus,
            data_lens,
            control,
            corrupted,
        }
    }
}

/// Offset of the data within one encoded PDU, through the protocol's framing.
fn data_offset<P: Protocol>(protocol: &mut P, pdu: &[u8]) -> Option<usize> {
    let prefix = pdu.get(..protocol.prefix_len())?;
    let frame = protocol.frame(prefix).ok()?;
    let body = frame.len - if frame.digest { 4 } else { 0 };
    let parsed = protocol.parse(pdu.get(..body)?).ok()?;
    Some(parsed.layout.data_offset as usize)
}

/// What one run of a workload produced.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// Buffers handed back, by tag, as bytes.
    pub buffers: Vec<(Tag, Vec<u8>)>,
    /// Data digest verdicts in PDU order (data and control PDUs).
    pub verdicts: Vec<DigestStatus>,
    /// Control PDU data in order.
    pub control: Vec<Vec<u8>>,
    /// Data errors reported as events.
    pub errors: Vec<DataError>,
    /// The fatal error that stopped the run, if any, in words.
    pub fatal: Option<String>,
    /// How each setup went.
    pub setups: Vec<SetupOutcome>,
}

/// Cuts `stream` into pieces of random sizes (from 1 byte up to `max_piece`).
pub fn cut<'a>(stream: &'a [u8], rng: &mut Rng, max_piece: usize) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = (1 + rng.below(max_piece as u64) as usize).min(stream.len() - at);
        pieces.push(&stream[at..at + n]);
        at += n;
    }
    pieces
}

/// Moves every pending event of `engine` into `out`.
pub fn drain<P: Protocol, B: DdpBackend>(engine: &mut Engine<P, B>, out: &mut Outcome) {
    while let Some(event) = engine.poll_event() {
        match event {
            Event::Data { digest, .. } => out.verdicts.push(digest),
            Event::Control { data, digest, .. } => {
                out.verdicts.push(digest);
                out.control.push(data);
            }
            Event::Released { tag, buffer, .. } => out.buffers.push((tag, buffer.into_vec())),
            Event::Error(e) => out.errors.push(e),
        }
    }
}

/// Registers the workload's buffers, feeds `pieces`, tears every command down and collects the
/// outcome. Buffers are pre-filled with `0xEE` so untouched bytes show.
pub fn run_pieces<P: Protocol, B: DdpBackend>(
    engine: &mut Engine<P, B>,
    workload: &Workload,
    pieces: &[&[u8]],
) -> Outcome {
    let mut out = Outcome::default();
    for cmd in &workload.commands {
        let segments = cmd.segments.iter().map(|&n| vec![0xEE; n]).collect();
        match engine.setup(cmd.tag, SgBuffer::from_segments(segments)) {
            Ok(outcome) => out.setups.push(outcome),
            Err((e, _)) => panic!("setup of {} failed: {e}", cmd.tag),
        }
    }
    for piece in pieces {
        if let Err(e) = engine.receive(Piece::bytes(piece)) {
            out.fatal = Some(e.to_string());
            break;
        }
        drain(engine, &mut out);
    }
    engine.teardown_all();
    drain(engine, &mut out);
    out.buffers.sort_by_key(|(tag, _)| *tag);
    out
}

/// Checks an outcome against the workload's reference.
///
/// # Panics
///
/// On any difference.
pub fn assert_matches_reference(workload: &Workload, out: &Outcome) {
    if let Some(e) = out.errors.first() {
        panic!(
            "{} unexpected data errors, the first: {e}",
            out.errors.len()
        );
    }
    if let Some(fatal) = &out.fatal {
        panic!("unexpected fatal error: {fatal}");
    }
    assert_eq!(
        out.buffers.len(),
        workload.commands.len(),
        "every buffer must come back"
    );
    for (cmd, (tag, got)) in workload.commands.iter().zip(&out.buffers) {
        assert_eq!(cmd.tag, *tag);
        if workload.corrupted.is_empty() {
            assert!(
                got == &cmd.data,
                "{tag}: placed bytes differ from the reference"
            );
        } else {
            assert_eq!(got.len(), cmd.data.len());
        }
    }
    assert_eq!(out.control, workload.control, "control PDU data differs");
    assert_eq!(
        out.verdicts.len(),
        workload.pdus.len(),
        "one verdict per PDU"
    );
    for (i, verdict) in out.verdicts.iter().enumerate() {
        let bad = workload.corrupted.contains(&i);
        assert_eq!(
            !verdict.is_ok(),
            bad,
            "PDU {i}: verdict {verdict:?}, corrupted: {bad}"
        );
    }
}

fn config<P: Protocol>(protocol: &P, queue: u32, hd: bool, dd: bool) -> QueueConfig {
    QueueConfig {
        header_digest: hd,
        data_digest: dd,
        queue_depth: 256,
        ..QueueConfig::new(protocol.id(), QueueId(queue))
    }
}

fn engine<P: KitProtocol, B: DdpBackend>(
    backend: B,
    queue: u32,
    hd: bool,
    dd: bool,
) -> Engine<P, B> {
    let protocol = P::with_digests(hd, dd);
    let config = config(&protocol, queue, hd, dd);
    Engine::new(protocol, backend, config, EngineOptions::default())
}

/// Runs every check of the kit against backends made by `make`.
pub fn run_all<B: DdpBackend, P: KitProtocol>(mut make: impl FnMut() -> B) {
    check_limits::<B, P>(&make());
    check_queue_lifecycle::<B, P>(&mut make);
    check_setup_teardown::<B, P>(make());
    check_declines::<B, P>(make());
    check_placement::<B, P>(&mut make, 24);
    check_hostile::<B, P>(make());
    check_resync_response::<B, P>(make());
}

/// Limits are self-consistent.
pub fn check_limits<B: DdpBackend, P: KitProtocol>(backend: &B) {
    let protocol = P::with_digests(false, false);
    if let Some(limits) = backend.limits(protocol.id()) {
        assert_eq!(
            limits.protocol,
            protocol.id(),
            "limits for the wrong protocol"
        );
        assert!(
            limits.max_queues >= 1,
            "a backend with limits offloads a queue"
        );
        assert!(limits.max_queue_depth >= 1);
        assert!(
            u64::from(limits.io_threshold) <= limits.max_io_bytes,
            "threshold above the largest mappable command"
        );
    }
}

/// Queues are added once per id, counted, and removed when the engine goes away.
pub fn check_queue_lifecycle<B: DdpBackend, P: KitProtocol>(make: &mut impl FnMut() -> B) {
    let mut backend = make();
    let protocol = P::with_digests(false, false);
    let cfg = config(&protocol, 7, false, false);
    let Some(limits) = backend.limits(protocol.id()) else {
        // A backend that does not offload the protocol must decline the queue.
        assert!(
            backend.queue_add(&cfg).is_err(),
            "queue added without limits"
        );
        return;
    };
    let before = backend.stats();
    assert_eq!(backend.queue_add(&cfg), Ok(()), "queue add within limits");
    assert_eq!(
        backend.queue_add(&cfg),
        Err(BackendError::QueueExists(QueueId(7))),
        "duplicate queue id"
    );
    let tag = Tag(1);
    let buffer = SgBuffer::zeroed(limits.io_threshold.max(4096) as usize);
    let io = crate::DdpIo {
        tag,
        buffer: &buffer,
    };
    assert!(
        backend.setup(QueueId(8), &io).is_err(),
        "setup on an unknown queue"
    );
    assert_eq!(backend.setup(QueueId(7), &io), Ok(()));
    assert_eq!(
        backend.setup(QueueId(7), &io),
        Err(BackendError::TagBusy(tag)),
        "tag mapped twice"
    );
    backend.queue_del(QueueId(7));
    let after = backend.stats();
    assert_eq!(after.queues_added, before.queues_added + 1);
    assert_eq!(after.queues_deleted, before.queues_deleted + 1);
    assert_eq!(after.setups, before.setups + 1);
    assert!(after.setup_failures > before.setup_failures);
    // The id is free again.
    assert_eq!(backend.queue_add(&cfg), Ok(()));
    backend.queue_del(QueueId(7));

    // Through the engine: dropping it deletes the queue.
    let backend = make();
    let e = engine::<P, B>(backend, 9, false, false);
    assert!(e.is_offloaded());
    assert_eq!(e.stats().queues_added, 1);
    drop(e);
}

/// Setup then teardown hands back the very same buffer (same allocation), once, through the
/// completion event; tags are reusable after that and not before.
pub fn check_setup_teardown<B: DdpBackend, P: KitProtocol>(backend: B) {
    let mut e = engine::<P, B>(backend, 1, false, false);
    let len = e
        .limits()
        .map_or(8192, |l| (l.io_threshold as usize).max(8192));
    let segments = vec![vec![1u8; len / 2], vec![2u8; len - len / 2]];
    let ptrs: Vec<*const u8> = segments.iter().map(|s| s.as_ptr()).collect();
    let tag = Tag(3);
    let outcome = e
        .setup(tag, SgBuffer::from_segments(segments))
        .expect("setup");
    let offloaded = e.is_offloaded();
    let want = if offloaded {
        SetupOutcome::Offloaded
    } else {
        SetupOutcome::Copied(Decline::QueueNotOffloaded)
    };
    assert_eq!(
        outcome, want,
        "an admissible command on an offloaded queue is mapped, else copied"
    );
    let (err, back) = e
        .setup(tag, SgBuffer::zeroed(len))
        .expect_err("second setup of a busy tag");
    assert!(matches!(err, Error::TagInUse(t) if t == tag), "{err}");
    assert_eq!(back.len(), len as u64, "a refused buffer comes back");
    assert!(e.poll_event().is_none(), "nothing released before teardown");
    e.teardown(tag).expect("teardown");
    assert!(
        matches!(
            e.teardown(tag),
            Err(Error::TagFinished(t) | Error::UnknownTag(t)) if t == tag
        ),
        "a second teardown is refused"
    );
    let mut released = None;
    for _ in 0..1000 {
        match e.poll_event() {
            Some(Event::Released {
                tag: t,
                buffer,
                offloaded: was_offloaded,
            }) => {
                assert_eq!(t, tag);
                assert_eq!(was_offloaded, offloaded);
                released = Some(buffer);
                break;
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None => {}
        }
    }
    let buffer = released.expect("teardown completes");
    let got: Vec<*const u8> = buffer.segments().map(<[u8]>::as_ptr).collect();
    assert_eq!(got, ptrs, "the same allocations come back");
    assert!(e.poll_event().is_none(), "released once");
    assert!(matches!(e.teardown(tag), Err(Error::UnknownTag(t)) if t == tag));
    assert!(e.setup(tag, buffer).is_ok(), "tag reusable after release");
    let s = e.stats();
    let mapped = if offloaded { 2 } else { 0 };
    assert_eq!(
        (s.setups, s.teardowns, s.teardowns_completed),
        (mapped, 1, 1)
    );
}

/// Commands outside the limits are declined, not failed, and their data is still placed (by
/// copy), identically.
pub fn check_declines<B: DdpBackend, P: KitProtocol>(backend: B) {
    let mut e = engine::<P, B>(backend, 2, false, true);
    let Some(limits) = e.limits().copied() else {
        return;
    };
    let mut cases: Vec<(Tag, SgBuffer, Decline)> = Vec::new();
    if limits.io_threshold > 1 {
        let n = limits.io_threshold as usize - 1;
        cases.push((Tag(1), SgBuffer::zeroed(n), Decline::BelowThreshold));
    }
    let big = (limits.io_threshold as usize).max(64);
    if limits.max_segments != 0 {
        let n = limits.max_segments as usize + 1;
        let per = big.div_ceil(n).max(1);
        let segs = (0..n).map(|_| vec![0u8; per]).collect();
        cases.push((
            Tag(2),
            SgBuffer::from_segments(segs),
            Decline::TooManySegments,
        ));
    }
    if let crate::TagRange::BelowQueueDepth = limits.tag_range {
        // The first tag past the queue depth: it fits any protocol's tag field.
        let depth = e.config().queue_depth;
        cases.push((Tag(depth), SgBuffer::zeroed(big), Decline::TagOutOfRange));
    }
    let protocol = P::with_digests(false, true);
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut rng = Rng::new(99);
    for (tag, buffer, reason) in cases {
        let data = rng.bytes(buffer.len() as usize);
        stream.extend_from_slice(&protocol.encode_data(tag, 0, &data));
        want.push((tag, data));
        assert_eq!(
            e.setup(tag, buffer).expect("setup"),
            SetupOutcome::Copied(reason)
        );
    }
    e.receive(Piece::bytes(&stream)).expect("receive");
    e.teardown_all();
    let mut got = Vec::new();
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released {
                tag,
                buffer,
                offloaded,
            } => {
                assert!(!offloaded);
                got.push((tag, buffer.into_vec()));
            }
            Event::Data { digest, .. } => assert_eq!(digest, DigestStatus::Computed),
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort_by_key(|(t, _)| *t);
    assert_eq!(got, want, "declined commands are placed by copy");
    assert_eq!(e.stats().setups_declined, want.len() as u64);
}

/// Random workloads, with every digest combination, cut into random pieces (including one
/// byte at a time), place exactly the reference bytes with the right verdicts.
pub fn check_placement<B: DdpBackend, P: KitProtocol>(make: &mut impl FnMut() -> B, rounds: u64) {
    for seed in 0..rounds {
        let mut rng = Rng::new(seed);
        let hd = seed & 1 == 1;
        let dd = seed & 2 == 2;
        let corrupt = dd && seed % 3 == 0;
        let mut protocol = P::with_digests(hd, dd);
        let workload = Workload::generate(&mut protocol, &mut rng, 4, 20_000, corrupt);
        let max_piece = match seed % 4 {
            0 => 1,
            1 => 7,
            2 => 1500,
            _ => 70_000,
        };
        let pieces = cut(&workload.stream, &mut rng, max_piece);
        let mut e = engine::<P, B>(make(), seed as u32, hd, dd);
        let out = run_pieces(&mut e, &workload, &pieces);
        assert_matches_reference(&workload, &out);
        let s = e.stats();
        assert_eq!(s.pdus, workload.pdus.len() as u64);
        assert_eq!(s.digests_failed, workload.corrupted.len() as u64);
        let payload: u64 = workload.commands.iter().map(|c| c.data.len() as u64).sum();
        assert_eq!(
            s.bytes_copied + s.bytes_placed + s.bytes_read_in_place,
            payload,
            "every payload byte accounted for once"
        );
    }
}

/// Hostile data: unknown tag, out of range, duplicate, torn-down tag. Each is a typed error,
/// and not one byte outside the command's range changes, in any buffer.
pub fn check_hostile<B: DdpBackend, P: KitProtocol>(backend: B) {
    let mut e = engine::<P, B>(backend, 3, false, false);
    let protocol = P::with_digests(false, false);
    let len = e
        .limits()
        .map_or(4096, |l| (l.io_threshold as usize).max(4096));
    for t in 0..2 {
        e.setup(Tag(t), SgBuffer::from_vec(vec![0xEE; len]))
            .expect("setup");
    }
    let data = vec![0x11u8; 64];
    let mut stream = Vec::new();
    stream.extend_from_slice(&protocol.encode_data(Tag(9), 0, &data));
    stream.extend_from_slice(&protocol.encode_data(Tag(0), len as u64 - 10, &data));
    stream.extend_from_slice(&protocol.encode_data(Tag(0), 1 << 31, &data));
    stream.extend_from_slice(&protocol.encode_data(Tag(0), 0, &data));
    // A duplicate with other bytes: an overwrite of bytes 32..64 would show.
    stream.extend_from_slice(&protocol.encode_data(Tag(0), 32, &[0x77; 64]));
    e.receive(Piece::bytes(&stream))
        .expect("per-PDU errors are not fatal");
    let mut errors = Vec::new();
    let mut data_events = 0;
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Error(err) => errors.push(err),
            Event::Data { .. } => data_events += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(data_events, 1, "only the valid PDU lands");
    assert_eq!(errors.len(), 4, "one error per hostile PDU: {errors:?}");
    assert!(matches!(errors[0], DataError::UnknownTag(Tag(9))));
    assert!(matches!(
        errors[1],
        DataError::OutOfRange { tag: Tag(0), .. }
    ));
    assert!(matches!(
        errors[2],
        DataError::OutOfRange { tag: Tag(0), .. }
    ));
    assert!(matches!(
        errors[3],
        DataError::Duplicate {
            tag: Tag(0),
            offset: 32,
            ..
        }
    ));
    // Data for a tag whose teardown started.
    e.teardown(Tag(1)).expect("teardown");
    let late = protocol.encode_data(Tag(1), 0, &data);
    e.receive(Piece::bytes(&late)).expect("not fatal");
    e.teardown_all();
    let mut buffers = Vec::new();
    let mut late_error = None;
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released { tag, buffer, .. } => buffers.push((tag, buffer.into_vec())),
            Event::Error(err) => late_error = Some(err),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        late_error,
        Some(DataError::TagFinished(Tag(1)) | DataError::UnknownTag(Tag(1)))
    ));
    buffers.sort_by_key(|(t, _)| *t);
    assert_eq!(buffers.len(), 2, "both buffers come back");
    let mut want0 = vec![0xEE; len];
    want0[..64].copy_from_slice(&data);
    assert!(buffers[0].1 == want0, "tag 0: only bytes 0..64 changed");
    assert!(
        buffers[1].1 == vec![0xEE; len],
        "tag 1: untouched after teardown"
    );
}

/// A resync response for a sequence the backend never asked about is harmless.
pub fn check_resync_response<B: DdpBackend, P: KitProtocol>(mut backend: B) {
    let protocol = P::with_digests(false, false);
    if backend.limits(protocol.id()).is_none() {
        return;
    }
    let cfg = config(&protocol, 11, false, false);
    backend.queue_add(&cfg).expect("queue add");
    backend.resync_response(QueueId(11), TcpSeq(12345), true);
    backend.resync_response(QueueId(11), TcpSeq(1), false);
    backend.resync_response(QueueId(12), TcpSeq(1), true);
    while let Some(ev) = backend.poll_event(QueueId(11)) {
        assert!(
            !matches!(ev, crate::BackendEvent::TeardownDone { .. }),
            "no teardown without a mapping"
        );
    }
    backend.queue_del(QueueId(11));
}
