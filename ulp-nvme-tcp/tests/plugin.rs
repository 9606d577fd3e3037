//! The NVMe/TCP plugin in the receive engine: C2HData placed by CCCID and DATAO, digest
//! verdicts, hostile headers, and the conformance kit with NVMe/TCP framing.

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{
    DigestStatus, Engine, EngineOptions, Error, Event, Piece, QueueConfig, QueueId, SgBuffer, Tag,
};
use ulp_ddp_core::{SocketReader, testkit};
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Error as WireError, FatalErrorStatus, Pda, PduType,
};
use ulp_nvme_tcp::{ControllerPdu, NVME_TCP, NvmeTcpHost};

fn engine(digests: Digests) -> Engine<NvmeTcpHost, SwBackend> {
    let config = QueueConfig::new(NVME_TCP, QueueId(1)).with_digests(digests.header, digests.data);
    Engine::new(
        NvmeTcpHost::with_digests(digests),
        SwBackend::new(),
        config,
        EngineOptions::default(),
    )
}

fn c2h(cid: u16, datao: u32, data: &[u8], last: bool, digests: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    C2hDataRepr {
        cccid: cid,
        datao,
        datal: data.len() as u32,
        last_pdu: last,
        success: false,
    }
    .emit(&mut out, digests, Pda::ZERO, data)
    .unwrap();
    out
}

#[test]
fn c2h_data_lands_by_cccid_and_datao() {
    for digests in [Digests::NONE, Digests::BOTH] {
        let mut e = engine(digests);
        e.setup(
            Tag(3),
            SgBuffer::from_segments(vec![vec![0; 5000], vec![0; 3192]]),
        )
        .unwrap();
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        let mut stream = c2h(3, 4096, &data[4096..], true, digests);
        stream.splice(0..0, c2h(3, 0, &data[..4096], false, digests));
        let mut resp = Vec::new();
        CapsuleRespRepr {
            cqe: Cqe {
                cid: 3,
                ..Cqe::default()
            },
        }
        .emit(&mut resp, digests)
        .unwrap();
        stream.extend(resp);
        for piece in stream.chunks(1000) {
            e.receive(Piece::bytes(piece)).unwrap();
        }
        let want = if digests.data {
            DigestStatus::Computed
        } else {
            DigestStatus::Absent
        };
        let mut datas = 0;
        let mut controls = 0;
        while let Some(ev) = e.poll_event() {
            match ev {
                Event::Data { tag, digest, .. } => {
                    assert_eq!((tag, digest), (Tag(3), want));
                    datas += 1;
                }
                Event::Control { header, .. } => {
                    assert!(
                        matches!(header, ControllerPdu::CapsuleResp(_)),
                        "{header:?}"
                    );
                    controls += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((datas, controls), (2, 1));
        e.teardown(Tag(3)).unwrap();
        let Some(Event::Released { buffer, .. }) = e.poll_event() else {
            panic!()
        };
        assert_eq!(buffer.into_vec(), data);
    }
}

fn resp(cid: u16, digests: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    CapsuleRespRepr {
        cqe: Cqe {
            cid,
            ..Cqe::default()
        },
    }
    .emit(&mut out, digests)
    .unwrap();
    out
}

/// Reads `stream` through the reader path until it ends; returns the reads it took.
fn read_through(e: &mut Engine<NvmeTcpHost, SwBackend>, mut stream: &[u8]) -> usize {
    let mut reader = SocketReader::new(4096);
    let mut reads = 0;
    while reader.read_once(e, &mut stream).unwrap() > 0 {
        reads += 1;
        assert!(reads < 10_000, "the reader makes progress");
    }
    reads
}

/// A CapsuleResp after a command's last C2HData is read with the end of its payload and the
/// next command's header: one read per command, and still no payload byte copied.
#[test]
fn reader_path_takes_the_response_with_the_data_one_read_per_command() {
    for digests in [Digests::NONE, Digests::BOTH] {
        let mut e = engine(digests);
        let mut stream = Vec::new();
        for cid in 0..8u16 {
            e.setup(Tag(u32::from(cid)), SgBuffer::zeroed(4096))
                .unwrap();
            stream.extend(c2h(cid, 0, &[cid as u8; 4096], true, digests));
            stream.extend(resp(cid, digests));
        }
        let reads = read_through(&mut e, &stream);
        // The first header, then one read per command (its payload, its response, the next
        // header); reading the response separately took two per command.
        assert_eq!(reads, 1 + 8, "{digests:?}");
        let s = e.stats();
        assert_eq!((s.bytes_copied, s.bytes_read_in_place), (0, 8 * 4096));
        let completions = std::iter::from_fn(|| e.poll_event())
            .filter(|ev| matches!(ev, Event::Control { .. }))
            .count();
        assert_eq!(completions, 8);
    }
}

/// When the expected response does not come next (another command's data does), the hint
/// costs at most a response's length of copying, and every byte still lands where it belongs.
#[test]
fn reader_path_survives_a_response_that_comes_later() {
    let digests = Digests::NONE;
    let mut e = engine(digests);
    e.setup(Tag(1), SgBuffer::zeroed(4096)).unwrap();
    e.setup(Tag(2), SgBuffer::zeroed(4096)).unwrap();
    let mut stream = c2h(1, 0, &[1; 4096], true, digests);
    stream.extend(c2h(2, 0, &[2; 4096], true, digests));
    stream.extend(resp(1, digests));
    stream.extend(resp(2, digests));
    read_through(&mut e, &stream);
    let s = e.stats();
    assert!(s.bytes_copied <= 24, "{} bytes copied", s.bytes_copied);
    assert_eq!(s.bytes_copied + s.bytes_read_in_place, 2 * 4096);
    let mut buffers = Vec::new();
    while let Some(ev) = e.poll_event() {
        if let Event::Data { tag, .. } = ev {
            buffers.push(tag);
        }
    }
    assert_eq!(buffers, [Tag(1), Tag(2)]);
    for (tag, byte) in [(Tag(1), 1u8), (Tag(2), 2)] {
        e.teardown(tag).unwrap();
        let Some(Event::Released { buffer, .. }) = e.poll_event() else {
            panic!("{tag:?} released")
        };
        assert_eq!(buffer.into_vec(), vec![byte; 4096], "{tag:?}");
    }
}

#[test]
fn success_without_last_pdu_is_fatal_and_kept() {
    let mut e = engine(Digests::NONE);
    e.setup(Tag(1), SgBuffer::zeroed(4)).unwrap();
    let mut pdu = c2h(1, 0, b"abcd", true, Digests::NONE);
    pdu[1] = 0x08; // SUCCESS without LAST_PDU
    // The engine hands back the codec's own error: no side channel.
    let err = e.receive(Piece::bytes(&pdu)).unwrap_err();
    assert_eq!(err, Error::Protocol(WireError::SuccessWithoutLastPdu));
    assert_eq!(
        WireError::SuccessWithoutLastPdu.fatal_error(),
        Some((FatalErrorStatus::InvalidHeaderField, 1))
    );
}

#[test]
fn host_to_controller_types_are_refused() {
    let mut e = engine(Digests::NONE);
    // An ICReq (type 0) arriving at the host.
    let mut pdu = vec![0u8; 128];
    pdu[2] = 128;
    pdu[4] = 128;
    let err = e.receive(Piece::bytes(&pdu)).unwrap_err();
    assert_eq!(
        err,
        Error::Protocol(WireError::WrongDirection(PduType::IcReq))
    );
    assert_eq!(
        err.to_string(),
        "bad PDU header: ICReq (PDU type 0x00) travels only from host to controller"
    );
}

#[test]
fn digest_flag_must_match_negotiation() {
    let mut e = engine(Digests::BOTH);
    e.setup(Tag(1), SgBuffer::zeroed(4)).unwrap();
    let pdu = c2h(1, 0, b"abcd", true, Digests::NONE);
    let err = e.receive(Piece::bytes(&pdu)).unwrap_err();
    assert!(err.is_fatal());
    assert!(
        matches!(
            err,
            Error::Protocol(WireError::DigestFlag {
                pdu_type: 0x07,
                negotiated: true,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "bad PDU header: C2HData (PDU type 0x07): header digest flag clear but digest negotiated"
    );
}

#[test]
fn conformance_kit_with_nvme_tcp_framing() {
    testkit::run_all::<SwBackend, NvmeTcpHost>(SwBackend::new);
}
