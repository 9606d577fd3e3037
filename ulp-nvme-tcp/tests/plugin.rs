//! The NVMe/TCP plugin in the receive engine: C2HData placed by CCCID and DATAO, digest
//! verdicts, hostile headers, and the conformance kit with NVMe/TCP framing.

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::testkit;
use ulp_ddp_core::{
    DigestStatus, Engine, EngineOptions, Error, Event, Piece, QueueConfig, QueueId, SgBuffer, Tag,
};
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Error as WireError, FatalErrorStatus, Pda, PduType,
};
use ulp_nvme_tcp::{ControllerPdu, NVME_TCP, NvmeTcpHost};

fn engine(digests: Digests) -> Engine<NvmeTcpHost, SwBackend> {
    let config = QueueConfig {
        header_digest: digests.header,
        data_digest: digests.data,
        ..QueueConfig::new(NVME_TCP, QueueId(1))
    };
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
    assert!(e.receive(Piece::bytes(&pdu)).unwrap_err().is_fatal());
}

#[test]
fn conformance_kit_with_nvme_tcp_framing() {
    testkit::run_all::<SwBackend, NvmeTcpHost>(SwBackend::new);
}
