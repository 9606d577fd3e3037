//! Segment-level behaviour of the model + driver + reassembly + engine: zero copies in order,
//! loss inside data, loss of a header (search, resync, resumption), reordering, duplicates,
//! digest corruption and asynchronous teardown.

use ulp_backend_mlx5::{Model, ModelConfig, Nic};
use ulp_ddp_core::{
    DigestStatus, EngineOptions, Event, QueueConfig, QueueId, SetupOutcome, SgBuffer, Tag, TcpSeq,
};
use ulp_nvme_tcp::wire::{C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Pda};
use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};

const ISN: u32 = u32::MAX - 20_000; // the stream wraps the sequence space

struct Stream {
    bytes: Vec<u8>,
    /// (start offset, data length) of each data PDU.
    pdus: Vec<(usize, usize)>,
    commands: Vec<Vec<u8>>,
}

/// `commands` commands of `len` bytes, sent as C2HData PDUs of `pdu` bytes, interleaved
/// round-robin, a CapsuleResp after each command.
fn stream(commands: usize, len: usize, pdu: usize, digests: Digests) -> Stream {
    let data: Vec<Vec<u8>> = (0..commands)
        .map(|c| (0..len).map(|i| (i * 7 + c * 13) as u8).collect())
        .collect();
    let mut bytes = Vec::new();
    let mut pdus = Vec::new();
    for off in (0..len).step_by(pdu) {
        for (c, d) in data.iter().enumerate() {
            let chunk = &d[off..(off + pdu).min(len)];
            let repr = C2hDataRepr {
                cccid: c as u16,
                datao: off as u32,
                datal: chunk.len() as u32,
                last_pdu: off + pdu >= len,
                success: false,
            };
            pdus.push((bytes.len(), chunk.len()));
            repr.emit(&mut bytes, digests, Pda::ZERO, chunk).unwrap();
            if off + pdu >= len {
                CapsuleRespRepr {
                    cqe: Cqe::default(),
                }
                .emit(&mut bytes, digests)
                .unwrap();
            }
        }
    }
    Stream {
        bytes,
        pdus,
        commands: data,
    }
}

fn nic(model: Model, digests: Digests) -> Nic<NvmeTcpHost> {
    let config = QueueConfig::new(NVME_TCP, QueueId(1))
        .with_digests(digests.header, digests.data)
        .with_rx_seq(TcpSeq(ISN));
    Nic::new(
        NvmeTcpHost::with_digests(digests),
        model,
        config,
        EngineOptions::default(),
    )
}

fn setup(nic: &mut Nic<NvmeTcpHost>, s: &Stream) {
    for (c, d) in s.commands.iter().enumerate() {
        let half = d.len() / 2;
        let buffer = SgBuffer::from_segments(vec![vec![0xEE; half], vec![0xEE; d.len() - half]]);
        let outcome = nic.engine_mut().setup(Tag(c as u32), buffer).unwrap();
        assert_eq!(outcome, SetupOutcome::Offloaded);
    }
}

/// Segment boundaries of `mss` bytes.
fn segments(len: usize, mss: usize) -> Vec<(usize, usize)> {
    (0..len)
        .step_by(mss)
        .map(|s| (s, (s + mss).min(len)))
        .collect()
}

fn send(nic: &mut Nic<NvmeTcpHost>, s: &Stream, seg: (usize, usize)) {
    let seq = TcpSeq(ISN.wrapping_add(seg.0 as u32));
    nic.deliver(seq, &s.bytes[seg.0..seg.1]).unwrap();
}

/// Tears everything down; returns the data verdicts in order and the buffers by tag.
fn finish(nic: &mut Nic<NvmeTcpHost>) -> (Vec<DigestStatus>, Vec<(Tag, Vec<u8>)>) {
    let mut verdicts = Vec::new();
    let mut buffers = Vec::new();
    let mut collect = |nic: &mut Nic<NvmeTcpHost>| {
        while let Some(ev) = nic.engine_mut().poll_event() {
            match ev {
                Event::Data { digest, .. } => verdicts.push(digest),
                Event::Released {
                    tag,
                    buffer,
                    offloaded,
                } => {
                    assert!(offloaded);
                    buffers.push((tag, buffer.into_vec()));
                }
                Event::Control { .. } => {}
                Event::Error(e) => panic!("unexpected error {e}"),
                other => panic!("unexpected event {other:?}"),
            }
        }
    };
    collect(nic);
    nic.engine_mut().teardown_all();
    for _ in 0..4 {
        collect(nic);
    }
    buffers.sort_by_key(|(t, _)| *t);
    (verdicts, buffers)
}

fn assert_buffers(s: &Stream, buffers: &[(Tag, Vec<u8>)]) {
    assert_eq!(buffers.len(), s.commands.len(), "every buffer comes back");
    for ((tag, got), want) in buffers.iter().zip(&s.commands) {
        assert!(got == want, "{tag}: wrong bytes");
    }
}

#[test]
fn in_order_traffic_is_placed_with_zero_cpu_copies() {
    let digests = Digests::BOTH;
    let s = stream(4, 128 * 1024, 16 * 1024, digests);
    let mut nic = nic(Model::new(), digests);
    setup(&mut nic, &s);
    let segs = segments(s.bytes.len(), 1448);
    for &seg in &segs {
        send(&mut nic, &s, seg);
    }
    let (verdicts, buffers) = finish(&mut nic);
    assert_buffers(&s, &buffers);
    let payload = 4 * 128 * 1024;
    let e = nic.engine().stats();
    assert_eq!(e.bytes_copied, 0, "no payload byte copied by the CPU");
    assert_eq!(e.bytes_placed, payload);
    assert_eq!(verdicts.len(), s.pdus.len());
    assert!(verdicts.iter().all(|v| *v == DigestStatus::Offloaded));
    assert_eq!(e.digests_offloaded, s.pdus.len() as u64);
    // The CPU computed header digests only (one per PDU, responses included).
    assert_eq!(e.digests_computed, e.pdus);
    let c = nic.counters();
    assert_eq!(c.bytes, payload);
    assert_eq!(
        (c.sk_add, c.setup, c.teardown, c.resync, c.drop),
        (1, 4, 4, 0, 0)
    );
    assert!(c.packets > 0 && c.packets <= segs.len() as u64);
    assert_eq!(nic.stats().dma_bytes, payload);
    assert_eq!(nic.stats().dma_missed, 0);
}

#[test]
fn teardown_completes_asynchronously() {
    let mut config = ModelConfig::default();
    config.invalidate_polls = 3;
    let model = Model::with_config(config);
    let mut nic = nic(model, Digests::NONE);
    let buffer = SgBuffer::zeroed(64 * 1024);
    assert_eq!(
        nic.engine_mut().setup(Tag(2), buffer).unwrap(),
        SetupOutcome::Offloaded
    );
    nic.engine_mut().teardown(Tag(2)).unwrap();
    let mut polls = 0;
    let released = loop {
        polls += 1;
        assert!(polls < 10, "teardown never completed");
        if let Some(Event::Released { tag, .. }) = nic.engine_mut().poll_event() {
            break tag;
        }
    };
    assert_eq!(released, Tag(2));
    assert!(polls >= 3, "released after {polls} polls: not asynchronous");
    assert_eq!(nic.engine().stats().teardowns_completed, 1);
    // The CCID is free again: a new mapping bumps its generation.
    assert_eq!(
        nic.engine_mut()
            .setup(Tag(2), SgBuffer::zeroed(64 * 1024))
            .unwrap(),
        SetupOutcome::Offloaded
    );
}

#[test]
fn losing_data_only_costs_that_segment_and_that_digest() {
    let digests = Digests::BOTH;
    let s = stream(2, 256 * 1024, 64 * 1024, digests);
    let mut nic = nic(Model::new(), digests);
    setup(&mut nic, &s);
    let segs = segments(s.bytes.len(), 1448);
    // A segment well inside the first PDU's data.
    let lost = 10;
    let (pdu_start, pdu_len) = s.pdus[0];
    assert!(segs[lost].0 > pdu_start + 100 && segs[lost].1 < pdu_start + pdu_len);
    for (i, &seg) in segs.iter().enumerate() {
        if i != lost {
            send(&mut nic, &s, seg);
        }
        if i == lost + 20 {
            send(&mut nic, &s, segs[lost]); // the retransmission
        }
    }
    let (verdicts, buffers) = finish(&mut nic);
    assert_buffers(&s, &buffers);
    assert_eq!(nic.counters().resync, 0, "the header track survives");
    let e = nic.engine().stats();
    assert_eq!(e.bytes_copied, (segs[lost].1 - segs[lost].0) as u64);
    assert_eq!(verdicts[0], DigestStatus::Computed);
    // The digest bit is per segment (`skb->ulp_crc`): the segment holding PDU 0's digest and
    // PDU 1's first bytes carries PDU 0's "not verified", so PDU 1 may be computed too.
    assert!(verdicts.iter().all(DigestStatus::is_ok));
    assert!(verdicts[2..].iter().all(|v| *v == DigestStatus::Offloaded));
}

#[test]
fn losing_a_header_resyncs_and_placement_resumes_within_one_pdu() {
    let digests = Digests {
        header: false,
        data: true,
    };
    let pdu = 8 * 1024;
    let s = stream(1, 256 * 1024, pdu, digests);
    let mut nic = nic(Model::new(), digests);
    setup(&mut nic, &s);
    let segs = segments(s.bytes.len(), 1448);
    // The segment holding the 6th PDU's header.
    let header = s.pdus[5].0;
    let lost = segs
        .iter()
        .position(|&(a, b)| a <= header && header < b)
        .unwrap();
    let mut copied_at_confirm = None;
    for (i, &seg) in segs.iter().enumerate() {
        if i != lost {
            send(&mut nic, &s, seg);
        }
        if i == lost + 30 {
            send(&mut nic, &s, segs[lost]);
        }
        let st = nic.engine().stats();
        if st.resync_confirmed == 1 && copied_at_confirm.is_none() {
            copied_at_confirm = Some(st.bytes_copied);
        }
    }
    let (verdicts, buffers) = finish(&mut nic);
    assert_buffers(&s, &buffers);
    let e = nic.engine().stats();
    assert_eq!(
        (e.resync_requests, e.resync_confirmed, e.resync_refused),
        (1, 1, 0)
    );
    assert_eq!(nic.counters().resync, 1);
    let at_confirm = copied_at_confirm.expect("the resync was confirmed");
    assert!(
        e.bytes_copied - at_confirm <= pdu as u64,
        "copied {} bytes after the confirmation: more than one PDU",
        e.bytes_copied - at_confirm
    );
    assert!(e.bytes_placed > 0 && e.bytes_copied + e.bytes_placed == 256 * 1024);
    assert!(verdicts.iter().all(DigestStatus::is_ok));
    // PDUs after the loss that the device did not fully see are verified by the CPU.
    assert!(verdicts[5..].contains(&DigestStatus::Computed));
    assert_eq!(*verdicts.last().unwrap(), DigestStatus::Offloaded);
    let m = nic.engine().backend().device().stats();
    assert_eq!(
        (m.lost_track, m.resync_requests, m.resync_confirmed),
        (1, 1, 1)
    );
}

#[test]
fn reordering_duplicates_and_corruption() {
    let digests = Digests::BOTH;
    let mut s = stream(3, 96 * 1024, 12 * 1024, digests);
    // Corrupt a data byte of PDU 4.
    let (start, _) = s.pdus[4];
    s.bytes[start + 28 + 100] ^= 0x01;
    let mut nic = nic(Model::new(), digests);
    setup(&mut nic, &s);
    let segs = segments(s.bytes.len(), 1000);
    let mut order: Vec<usize> = (0..segs.len()).collect();
    for i in (0..order.len() - 1).step_by(7) {
        order.swap(i, i + 1);
    }
    for (n, &i) in order.iter().enumerate() {
        send(&mut nic, &s, segs[i]);
        if n % 5 == 0 {
            send(&mut nic, &s, segs[i]);
        }
    }
    let (verdicts, buffers) = finish(&mut nic);
    assert_eq!(buffers.len(), 3);
    for (c, (_, got)) in buffers.iter().enumerate() {
        let mut want = s.commands[c].clone();
        if c == 1 {
            want[12 * 1024 + 100] ^= 0x01; // PDU 4 is command 1's second PDU
        }
        assert!(got == &want);
    }
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(!v.is_ok(), i == 4, "PDU {i}: {v:?}");
    }
    assert_eq!(nic.engine().stats().digests_failed, 1);
    assert!(nic.engine().stats().bytes_placed > 0);
    assert_eq!(nic.stats().dma_missed, 0);
}
