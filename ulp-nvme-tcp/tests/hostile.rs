//! A hostile or broken controller, scripted byte by byte through the sans-IO host queue: every
//! violation ends in a typed error, the H2CTermReq the specification prescribes (or none, for
//! C2HTermReq), aborted completions that hand every buffer back after teardown, and no write
//! outside a buffer.

use proptest::prelude::*;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SansIo;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_nvme_tcp::nvme;
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Error as WireError, FatalErrorStatus, IcRespRepr,
    Pda, R2tRepr, TermReqDirection, TermReqRepr,
};
use ulp_nvme_tcp::{Connection, ConnectionConfig, ConnectionError, Data, Event, Status, Violation};

const LEN: usize = 8192;

fn queue(digests: Digests) -> Connection<SwBackend> {
    let mut cfg = ConnectionConfig::io(QueueId(1), 1, 4, digests);
    cfg.in_capsule_limit = 4096;
    let mut q = Connection::new(cfg, SwBackend::new());
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    assert_eq!(out.len(), 128, "ICReq first");
    assert_eq!(out[0], 0x00);
    let mut ic = Vec::new();
    IcRespRepr {
        cpda: Pda::ZERO,
        digests,
        maxh2cdata: 4096,
    }
    .emit(&mut ic)
    .expect("icresp");
    q.handle_bytes(&ic);
    assert!(matches!(q.poll_event(), Some(Event::Connected(_))));
    q
}

fn submit_read(q: &mut Connection<SwBackend>) -> u16 {
    let cid = q
        .submit(
            nvme::read(1, 0, (LEN / 512) as u32),
            Data::Read(SgBuffer::zeroed(LEN)),
        )
        .expect("submit");
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    assert_eq!(out[0], 0x04, "capsule sent");
    cid
}

fn c2h(cid: u16, datao: u32, data: &[u8], last: bool, success: bool, d: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    C2hDataRepr {
        cccid: cid,
        datao,
        datal: data.len() as u32,
        last_pdu: last,
        success,
    }
    .emit(&mut out, d, Pda::ZERO, data)
    .expect("c2h");
    out
}

fn resp(cid: u16, status: u16, d: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    CapsuleRespRepr {
        cqe: Cqe {
            cid,
            status,
            ..Cqe::default()
        },
    }
    .emit(&mut out, d)
    .expect("resp");
    out
}

/// Feeds `bytes`, then expects: aborted completions for everything outstanding, the
/// termination with `error`, and an H2CTermReq with `fes` (or none) as the last transmit.
fn expect_termination(
    q: &mut Connection<SwBackend>,
    bytes: &[u8],
    error: impl Fn(&ConnectionError) -> bool,
    fes: Option<(FatalErrorStatus, u32)>,
) {
    let outstanding = q.outstanding();
    q.handle_bytes(bytes);
    let mut aborted = 0;
    let mut terminated = None;
    while let Some(e) = q.poll_event() {
        match e {
            Event::Completed(c) => {
                assert_eq!(c.status, Status::ABORTED);
                if let Some(b) = c.buffer {
                    assert_eq!(b.len(), LEN as u64, "the buffer comes back whole");
                }
                aborted += 1;
            }
            Event::Closed(e) => terminated = Some(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    let e = terminated.expect("terminated");
    assert!(error(&e), "got {e:?}");
    assert_eq!(
        aborted, outstanding,
        "every outstanding command completes, aborted"
    );
    assert_eq!(q.outstanding(), 0, "every command completed");
    assert_eq!(q.engine().registered(), 0, "every buffer released");
    assert!(q.is_closed());
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    match fes {
        None => assert!(out.is_empty(), "no H2CTermReq: {out:?}"),
        Some((fes, fei)) => {
            let (r, _) = TermReqRepr::parse(&out, Digests::NONE).expect("H2CTermReq");
            assert_eq!(r.direction, TermReqDirection::HostToController);
            assert_eq!((r.fes, r.fei), (fes as u16, fei));
        }
    }
    // Further input is ignored, without panicking.
    q.handle_bytes(bytes);
    assert!(q.poll_event().is_none());
}

fn protocol(v: Violation) -> impl Fn(&ConnectionError) -> bool {
    move |e| *e == ConnectionError::Protocol(v)
}

#[test]
fn unknown_cid() {
    let mut q = queue(Digests::NONE);
    submit_read(&mut q);
    let pdu = c2h(3, 0, &[1; 512], true, false, Digests::NONE);
    expect_termination(
        &mut q,
        &pdu,
        protocol(Violation::UnknownCid {
            pdu: "C2HData",
            cid: 3,
        }),
        Some((FatalErrorStatus::InvalidHeaderField, 8)),
    );
}

#[test]
fn finished_cid() {
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    let mut bytes = c2h(cid, 0, &[1; LEN], true, false, Digests::NONE);
    bytes.extend(resp(cid, 0, Digests::NONE));
    q.handle_bytes(&bytes);
    let Some(Event::Completed(c)) = q.poll_event() else {
        panic!("completion")
    };
    assert_eq!(c.status, Status::SUCCESS);
    assert_eq!(c.buffer.expect("buffer").into_vec(), vec![1; LEN]);
    let late = c2h(cid, 0, &[2; 512], true, false, Digests::NONE);
    expect_termination(
        &mut q,
        &late,
        protocol(Violation::UnknownCid {
            pdu: "C2HData",
            cid,
        }),
        Some((FatalErrorStatus::InvalidHeaderField, 8)),
    );
}

#[test]
fn data_outside_the_command() {
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    let pdu = c2h(cid, LEN as u32 - 100, &[9; 512], true, false, Digests::NONE);
    expect_termination(
        &mut q,
        &pdu,
        protocol(Violation::DataOutOfRange(cid)),
        Some((FatalErrorStatus::DataTransferOutOfRange, 0)),
    );
}

#[test]
fn overlapping_data() {
    let mut q = queue(Digests::BOTH);
    let cid = submit_read(&mut q);
    let mut bytes = c2h(cid, 0, &[1; 4096], false, false, Digests::BOTH);
    bytes.extend(c2h(cid, 2048, &[2; 4096], true, false, Digests::BOTH));
    expect_termination(
        &mut q,
        &bytes,
        protocol(Violation::DuplicateData(cid)),
        Some((FatalErrorStatus::InvalidHeaderField, 12)),
    );
}

#[test]
fn data_after_last_pdu() {
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    let mut bytes = c2h(cid, 0, &[1; 4096], true, false, Digests::NONE);
    bytes.extend(c2h(cid, 4096, &[2; 4096], true, false, Digests::NONE));
    expect_termination(
        &mut q,
        &bytes,
        protocol(Violation::DataAfterLast(cid)),
        Some((FatalErrorStatus::PduSequenceError, 0)),
    );
}

#[test]
fn success_without_last_pdu() {
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    let mut pdu = c2h(cid, 0, &[1; LEN], true, false, Digests::NONE);
    pdu[1] = 0x08; // SUCCESS, no LAST_PDU
    expect_termination(
        &mut q,
        &pdu,
        |e| *e == ConnectionError::Wire(WireError::SuccessWithoutLastPdu),
        Some((FatalErrorStatus::InvalidHeaderField, 1)),
    );
}

#[test]
fn bad_plen_hlen_pdo() {
    for (at, value, fei) in [(4usize, 20u8, 4u32), (2, 28, 2), (3, 23, 3)] {
        let mut q = queue(Digests::NONE);
        let cid = submit_read(&mut q);
        let mut pdu = c2h(cid, 0, &[1; 512], true, false, Digests::NONE);
        pdu[at] = value;
        if at == 4 {
            pdu[5] = 0;
        }
        // The codec's own error names the field (PLEN, HLEN, PDO), as the FEI does.
        expect_termination(
            &mut q,
            &pdu,
            |e| match at {
                4 => matches!(e, ConnectionError::Wire(WireError::BadPlen { .. })),
                2 => matches!(e, ConnectionError::Wire(WireError::BadHlen { .. })),
                _ => matches!(e, ConnectionError::Wire(WireError::BadPdo { .. })),
            },
            Some((FatalErrorStatus::InvalidHeaderField, fei)),
        );
    }
}

#[test]
fn bad_header_digest() {
    let mut q = queue(Digests::BOTH);
    let cid = submit_read(&mut q);
    let mut pdu = c2h(cid, 0, &[1; 512], true, false, Digests::BOTH);
    pdu[24] ^= 0xFF;
    let received = u32::from_le_bytes([pdu[24], pdu[25], pdu[26], pdu[27]]);
    expect_termination(
        &mut q,
        &pdu,
        |e| {
            matches!(
                e,
                ConnectionError::Engine(ulp_ddp_core::Error::HeaderDigest { .. })
            )
        },
        Some((FatalErrorStatus::HeaderDigestError, received)),
    );
}

#[test]
fn bad_data_digest_fails_the_command_not_the_connection() {
    for success_flag in [false, true] {
        let mut q = queue(Digests::BOTH);
        let cid = submit_read(&mut q);
        let mut bytes = c2h(cid, 0, &[1; 4096], false, false, Digests::BOTH);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        bytes.extend(c2h(
            cid,
            4096,
            &[2; 4096],
            true,
            success_flag,
            Digests::BOTH,
        ));
        if !success_flag {
            bytes.extend(resp(cid, 0, Digests::BOTH));
        }
        q.handle_bytes(&bytes);
        let Some(Event::Completed(c)) = q.poll_event() else {
            panic!("completion")
        };
        assert_eq!(
            c.status,
            Status::DATA_TRANSFER_ERROR,
            "a later success does not hide it"
        );
        assert_eq!(c.by_success_flag, success_flag);
        assert!(q.is_connected());
        assert_eq!(q.stats().digests_failed, 1);
        // The queue goes on.
        let cid = submit_read(&mut q);
        q.handle_bytes(&c2h(cid, 0, &[3; LEN], true, true, Digests::BOTH));
        let Some(Event::Completed(c)) = q.poll_event() else {
            panic!("completion")
        };
        assert_eq!(c.status, Status::SUCCESS);
    }
}

#[test]
fn short_read_is_an_error() {
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    let mut bytes = c2h(cid, 0, &[1; 512], true, false, Digests::NONE);
    bytes.extend(resp(cid, 0, Digests::NONE));
    q.handle_bytes(&bytes);
    let Some(Event::Completed(c)) = q.poll_event() else {
        panic!("completion")
    };
    assert_eq!(c.status, Status::DATA_TRANSFER_ERROR);
}

#[test]
fn c2h_term_req() {
    let mut q = queue(Digests::BOTH);
    submit_read(&mut q);
    let mut pdu = Vec::new();
    TermReqRepr::new(
        TermReqDirection::ControllerToHost,
        FatalErrorStatus::PduSequenceError,
        0,
    )
    .emit(&mut pdu, &[0xAB; 24])
    .expect("term");
    expect_termination(
        &mut q,
        &pdu,
        |e| *e == ConnectionError::PeerTerminated { fes: 2, fei: 0 },
        None,
    );
}

#[test]
fn unknown_cid_in_response() {
    let mut q = queue(Digests::NONE);
    submit_read(&mut q);
    expect_termination(
        &mut q,
        &resp(2, 0, Digests::NONE),
        protocol(Violation::UnknownCid {
            pdu: "CapsuleResp",
            cid: 2,
        }),
        Some((FatalErrorStatus::InvalidHeaderField, 8)),
    );
}

fn r2t(cid: u16, ttag: u16, r2to: u32, r2tl: u32) -> Vec<u8> {
    let mut out = Vec::new();
    R2tRepr {
        cccid: cid,
        ttag,
        r2to,
        r2tl,
    }
    .emit(&mut out, Digests::NONE)
    .expect("r2t");
    out
}

#[test]
fn hostile_r2ts() {
    // R2T for a read.
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    expect_termination(
        &mut q,
        &r2t(cid, 1, 0, 512),
        protocol(Violation::NotAWrite(cid)),
        Some((FatalErrorStatus::InvalidHeaderField, 8)),
    );
    // Past the end of the data, a second R2T while one is running, a wrong offset, empty.
    type Case = (Vec<(u32, u32)>, Violation, FatalErrorStatus);
    let cases: [Case; 4] = [
        (
            vec![(0, 16384)],
            Violation::R2tOutOfRange(0),
            FatalErrorStatus::DataTransferOutOfRange,
        ),
        (
            vec![(0, 4096), (4096, 4096)],
            Violation::R2tLimit(0),
            FatalErrorStatus::DataTransferLimitExceeded,
        ),
        (
            vec![(512, 4096)],
            Violation::R2tOffset {
                cid: 0,
                expected: 0,
                got: 512,
            },
            FatalErrorStatus::InvalidHeaderField,
        ),
        (
            vec![(0, 0)],
            Violation::EmptyR2t(0),
            FatalErrorStatus::InvalidHeaderField,
        ),
    ];
    for (r2ts, v, fes) in cases {
        let mut q = queue(Digests::NONE);
        let cid = q
            .submit(
                nvme::write(1, 0, 16),
                Data::Write(SgBuffer::from_vec(vec![5; LEN])),
            )
            .expect("submit");
        assert_eq!(cid, 0);
        let mut out = Vec::new();
        q.transmit_all(&mut out);
        assert_eq!(out.len(), 72, "no in-capsule data above the limit");
        let bytes: Vec<u8> = r2ts.iter().flat_map(|&(o, l)| r2t(cid, 7, o, l)).collect();
        let fei = v.fatal_error().1;
        expect_termination(&mut q, &bytes, protocol(v), Some((fes, fei)));
    }
}

#[test]
fn r2t_splits_at_maxh2cdata() {
    let mut q = queue(Digests::BOTH);
    let data: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let cid = q
        .submit(
            nvme::write(1, 0, 16),
            Data::Write(SgBuffer::from_vec(data.clone())),
        )
        .expect("submit");
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    q.handle_bytes(&{
        let mut o = Vec::new();
        R2tRepr {
            cccid: cid,
            ttag: 9,
            r2to: 0,
            r2tl: LEN as u32,
        }
        .emit(&mut o, Digests::BOTH)
        .expect("r2t");
        o
    });
    out.clear();
    q.transmit_all(&mut out);
    let mut at = 0;
    let mut got = Vec::new();
    while at < out.len() {
        let (r, l) =
            ulp_nvme_tcp::wire::H2cDataRepr::parse(&out[at..], Digests::BOTH).expect("h2c");
        l.verify_data_digest(&out[at..]).expect("digest");
        assert!(r.datal <= 4096);
        assert_eq!((r.ttag, r.datao as usize), (9, got.len()));
        got.extend_from_slice(l.data(&out[at..]).expect("data"));
        assert_eq!(r.last_pdu, got.len() == LEN);
        at += l.plen;
    }
    assert_eq!(got, data);
    q.handle_bytes(&resp(cid, 0, Digests::BOTH));
    let Some(Event::Completed(c)) = q.poll_event() else {
        panic!("completion")
    };
    assert_eq!(
        (c.status, c.buffer.map(|w| w.len())),
        (Status::SUCCESS, Some(LEN as u64))
    );
}

#[test]
fn digests_refused() {
    let mut q = Connection::new(
        ConnectionConfig::io(QueueId(1), 1, 4, Digests::BOTH),
        SwBackend::new(),
    );
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    let mut ic = Vec::new();
    IcRespRepr {
        cpda: Pda::ZERO,
        digests: Digests::NONE,
        maxh2cdata: 4096,
    }
    .emit(&mut ic)
    .expect("icresp");
    q.handle_bytes(&ic);
    let Some(Event::Closed(e)) = q.poll_event() else {
        panic!("terminated")
    };
    assert!(matches!(
        e,
        ConnectionError::Protocol(Violation::DigestsRefused { .. })
    ));
    out.clear();
    q.transmit_all(&mut out);
    let (r, _) = TermReqRepr::parse(&out, Digests::NONE).expect("H2CTermReq");
    assert_eq!(
        (r.fes, r.fei),
        (FatalErrorStatus::UnsupportedParameter as u16, 11)
    );
}

#[test]
fn pdu_before_icresp() {
    let mut q = Connection::new(
        ConnectionConfig::io(QueueId(1), 1, 4, Digests::NONE),
        SwBackend::new(),
    );
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    q.handle_bytes(&resp(0, 0, Digests::NONE));
    let Some(Event::Closed(e)) = q.poll_event() else {
        panic!("terminated")
    };
    assert_eq!(e, ConnectionError::Protocol(Violation::UnexpectedPdu(0x05)));
}

/// Collects the queue's completions; whether it reported termination.
fn drain(q: &mut Connection<SwBackend>, completions: &mut Vec<ulp_nvme_tcp::Completion>) -> bool {
    let mut terminated = false;
    while let Some(e) = q.poll_event() {
        match e {
            Event::Completed(c) => completions.push(c),
            Event::Closed(_) => terminated = true,
            _ => {}
        }
    }
    terminated
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A valid read reply with bytes mutated and cut anywhere: never a panic, the buffer comes
    /// back with its length, and the queue either completes the command or terminates (or, when
    /// a mutated length leaves it waiting for more bytes, terminates at the end of the stream
    /// and completes the command then). With digests on, a SUCCESS completion carries exactly
    /// the data sent.
    #[test]
    fn mutated_replies_never_panic(
        muts in prop::collection::vec((0usize..10_000, any::<u8>()), 0..4),
        cut in 1usize..600,
        digests in any::<bool>(),
        success in any::<bool>(),
    ) {
        let d = if digests { Digests::BOTH } else { Digests::NONE };
        let mut q = queue(d);
        let cid = submit_read(&mut q);
        let mut bytes = c2h(cid, 0, &[1; 4096], false, false, d);
        bytes.extend(c2h(cid, 4096, &[2; 4096], true, success, d));
        if !success {
            bytes.extend(resp(cid, 0, d));
        }
        for (at, v) in muts {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        for piece in bytes.chunks(cut) {
            q.handle_bytes(piece);
        }
        let mut out = Vec::new();
        q.transmit_all(&mut out);
        let mut completions = Vec::new();
        let mut terminated = drain(&mut q, &mut completions);
        let stalled = completions.is_empty() && !terminated;
        if stalled {
            // Waiting for bytes a mutated length announced: the peer closing ends it.
            q.handle_received(Ok(0));
            terminated |= drain(&mut q, &mut completions);
        }
        prop_assert!(terminated || !completions.is_empty(), "neither completed nor terminated");
        prop_assert_eq!(completions.len(), 1, "the read completes exactly once");
        let c = completions.pop().expect("one completion");
        prop_assert_eq!(c.cid, cid);
        if stalled {
            prop_assert_eq!(c.status, Status::ABORTED);
        }
        let b = c.buffer.expect("the buffer comes back").into_vec();
        prop_assert_eq!(b.len(), LEN);
        if digests && c.status == Status::SUCCESS {
            prop_assert!(b[..4096].iter().all(|&x| x == 1), "digest-checked data");
            prop_assert!(b[4096..].iter().all(|&x| x == 2), "digest-checked data");
        }
        q.close();
        while q.poll_event().is_some() {}
        prop_assert_eq!(q.engine().registered(), 0);
    }

    /// A valid reply cut at every size completes with the right data.
    #[test]
    fn any_split(cut in 1usize..300, digests in any::<bool>()) {
        let d = if digests { Digests::BOTH } else { Digests::NONE };
        let mut q = queue(d);
        let cid = submit_read(&mut q);
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7) as u8).collect();
        // Out of order before the last PDU: placement goes by DATAO.
        let mut bytes = c2h(cid, 2048, &data[2048..4096], false, false, d);
        bytes.extend(c2h(cid, 0, &data[..2048], false, false, d));
        bytes.extend(c2h(cid, 4096, &data[4096..], true, false, d));
        bytes.extend(resp(cid, 0, d));
        for piece in bytes.chunks(cut) {
            q.handle_bytes(piece);
        }
        let Some(Event::Completed(c)) = q.poll_event() else { panic!("completion") };
        prop_assert_eq!(c.status, Status::SUCCESS);
        prop_assert_eq!(c.buffer.expect("buffer").into_vec(), data);
    }
}

#[test]
fn close_reports_whether_a_released_buffer_was_offloaded() {
    // The software backend maps every buffer its limits admit: a read aborted by close() still
    // reports the buffer as offloaded, as a normal completion would.
    let mut q = queue(Digests::NONE);
    let cid = submit_read(&mut q);
    q.close();
    let mut done = None;
    while let Some(e) = q.poll_event() {
        if let Event::Completed(c) = e {
            done = Some(c);
        }
    }
    let c = done.expect("the read completes on close");
    assert_eq!(c.cid, cid);
    assert_eq!(c.status, Status::ABORTED);
    assert_eq!(c.buffer.expect("buffer back").len(), LEN as u64);
    assert!(c.offloaded, "the backend had mapped the buffer");
}

/// A CID becomes free only when its completion is taken: a controller that completes every
/// command at once does not let a new command take the CID of a completion the caller has
/// not seen yet.
#[test]
fn cid_is_reused_only_after_its_completion_is_taken() {
    let d = Digests::NONE;
    let mut q = queue(d);
    let cids: Vec<u16> = (0..4).map(|_| submit_read(&mut q)).collect();
    assert_eq!(q.free_slots(), 0);
    let mut bytes = Vec::new();
    for &cid in &cids {
        bytes.extend(c2h(cid, 0, &[cid as u8; LEN], true, false, d));
        bytes.extend(resp(cid, 0, d));
    }
    q.handle_bytes(&bytes);
    assert_eq!(
        (q.free_slots(), q.outstanding()),
        (0, 4),
        "finished, not yet taken"
    );
    assert!(
        q.submit(nvme::read(1, 0, 1), Data::Read(SgBuffer::zeroed(512)))
            .is_err()
    );
    let two = q
        .poll_completion(Some(cids[2]))
        .expect("completion of the third command");
    assert_eq!(
        two.buffer.expect("buffer").into_vec(),
        vec![cids[2] as u8; LEN]
    );
    assert_eq!((q.free_slots(), q.outstanding()), (1, 3));
    let again = submit_read(&mut q);
    assert_eq!(again & 0x0FFF, cids[2], "the one slot taken back is reused");
    assert_eq!(
        again,
        cids[2] | 0x1000,
        "under the slot's next generation, so a stale PDU cannot reach it"
    );
    let mut rest = Vec::new();
    while let Some(e) = q.poll_event() {
        if let Event::Completed(c) = e {
            assert_eq!(c.status, Status::SUCCESS);
            rest.push(c.cid);
        }
    }
    assert_eq!(rest, vec![cids[0], cids[1], cids[3]]);
    assert_eq!((q.free_slots(), q.outstanding()), (3, 1));
}
