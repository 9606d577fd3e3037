//! The mlx5 driver over the device model against the conformance kit, and the protocols it
//! declines.

use ulp_backend_mlx5::{
    IO_THRESHOLD, MAX_QUEUES, MAX_SGL, Mlx5Backend, Model, ModelConfig, Nic, validate_sgl,
};
use ulp_ddp_core::testkit;
use ulp_ddp_core::{
    BackendError, DdpBackend, Decline, Engine, EngineOptions, Event, HeaderError, HeaderFrame,
    Limits, Parsed, PduLayout, Placement, Protocol, ProtocolId, QueueConfig, QueueId, SetupOutcome,
    SgBuffer, Tag, TagRange, TcpSeq,
};
use ulp_nvme_tcp::wire::{C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Pda};
use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};

#[test]
fn conformance_kit() {
    testkit::run_all::<Mlx5Backend<Model>, NvmeTcpHost>(|| Mlx5Backend::new(Model::new()));
}

#[test]
fn conformance_kit_with_immediate_invalidation() {
    let mut config = ModelConfig::default();
    config.invalidate_polls = 0;
    testkit::run_all::<Mlx5Backend<Model>, NvmeTcpHost>(|| {
        Mlx5Backend::new(Model::with_config(config))
    });
}

#[test]
fn limits_are_connectx7() {
    let backend = Mlx5Backend::new(Model::new());
    let limits: Limits = backend.limits(NVME_TCP).expect("NVMe/TCP is offloaded");
    assert_eq!(limits.max_segments, MAX_SGL);
    assert_eq!(limits.max_segments, 128);
    assert_eq!(limits.io_threshold, IO_THRESHOLD);
    assert_eq!(limits.io_threshold, 32 * 1024);
    // `ida_simple_get(.., 1, 4000)`: ids 1 to 3999 (the end is exclusive).
    assert_eq!(limits.max_queues, MAX_QUEUES);
    assert_eq!(limits.max_queues, 3999);
    assert_eq!(limits.tag_range, TagRange::BelowQueueDepth);
    assert!(!limits.digests.header && limits.digests.data && !limits.tls);
}

#[test]
fn ccids_beyond_the_queue_depth_are_not_mapped() {
    let config = QueueConfig::new(NVME_TCP, QueueId(1)).with_queue_depth(32);
    let mut e = Engine::new(
        NvmeTcpHost::new(),
        Mlx5Backend::new(Model::new()),
        config,
        EngineOptions::default(),
    );
    // The engine applies the limits: CCID 32 on a queue of depth 32 is copied, not mapped.
    let outcome = e.setup(Tag(32), SgBuffer::zeroed(64 * 1024)).unwrap();
    assert_eq!(outcome, SetupOutcome::Copied(Decline::TagOutOfRange));
    assert_eq!(
        e.setup(Tag(31), SgBuffer::zeroed(64 * 1024)).unwrap(),
        SetupOutcome::Offloaded
    );
    let c = e.backend().counters();
    assert_eq!((c.sk_add, c.setup, c.setup_fail), (1, 1, 0));
    // The driver refuses it too when called directly.
    let buffer = SgBuffer::zeroed(64 * 1024);
    let io = ulp_ddp_core::DdpIo {
        tag: Tag(32),
        buffer: &buffer,
    };
    assert_eq!(
        e.backend_mut().setup(QueueId(1), &io),
        Err(BackendError::TagOutOfRange(Tag(32)))
    );
    assert_eq!(e.backend().counters().setup_fail, 1);
}

#[test]
fn too_many_queues() {
    let mut backend = Mlx5Backend::new(Model::new());
    for q in 0..3998 {
        backend
            .queue_add(&QueueConfig::new(NVME_TCP, QueueId(q)))
            .expect("within the driver's 3,999 queues");
    }
    // The 3,999th queue takes the last id the IDA hands out (3999).
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(3998))),
        Ok(())
    );
    assert_eq!(backend.counters().sk_add, 3999);
    // The 4,000th does not: `ida_simple_get(.., 1, 4000)` has no id left.
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(3999))),
        Err(BackendError::TooManyQueues)
    );
    assert!(!backend.has_queue(QueueId(3999)));
    backend.queue_del(QueueId(17));
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(5000))),
        Ok(())
    );
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(5001))),
        Err(BackendError::TooManyQueues)
    );
    let c = backend.counters();
    assert_eq!((c.sk_add, c.sk_add_fail, c.sk_del), (4000, 2, 1));
}

/// An NVMe/TCP host connection (queue 1, stream from sequence number 0) on a default model.
fn nvme_nic() -> Nic<NvmeTcpHost> {
    let config = QueueConfig::new(NVME_TCP, QueueId(1));
    Nic::new(
        NvmeTcpHost::new(),
        Model::new(),
        config,
        EngineOptions::default(),
    )
}

/// Sends one C2HData PDU carrying `data` for `tag` (last, no digests) and a CapsuleResp, in
/// segments of `mss` bytes, then tears `tag` down; returns the released buffer and whether it
/// was offloaded.
fn read_one(nic: &mut Nic<NvmeTcpHost>, tag: Tag, data: &[u8], mss: usize) -> (Vec<u8>, bool) {
    let repr = C2hDataRepr {
        cccid: tag.0 as u16,
        datao: 0,
        datal: data.len() as u32,
        last_pdu: true,
        success: false,
    };
    let mut stream = Vec::new();
    repr.emit(&mut stream, Digests::NONE, Pda::ZERO, data)
        .unwrap();
    CapsuleRespRepr {
        cqe: Cqe::default(),
    }
    .emit(&mut stream, Digests::NONE)
    .unwrap();
    for (i, segment) in stream.chunks(mss).enumerate() {
        nic.deliver(TcpSeq((i * mss) as u32), segment).unwrap();
    }
    nic.engine_mut().teardown(tag).unwrap();
    for _ in 0..100 {
        while let Some(event) = nic.engine_mut().poll_event() {
            if let Event::Released {
                buffer, offloaded, ..
            } = event
            {
                return (buffer.into_vec(), offloaded);
            }
        }
    }
    panic!("{tag} was never released");
}

/// A buffer the series' `mlx5e_nvmeotcp_validate_sgl` refuses is declined at setup (counted in
/// `setup_fail`), the command falls back to copying and its data still arrives; the same bytes
/// in page-sized segments are placed.
#[test]
fn buffers_of_a_shape_the_series_refuses_are_copied() {
    let data: Vec<u8> = (0..34_048u32).map(|i| (i * 31 + 7) as u8).collect();
    // 20 entries of 64 bytes, then 8 pages: 28 entries, within the 128 the device maps, but a
    // packet starting with the data covers only 17 × 64 = 1088 bytes of the first 17 entries
    // and would need an 18th fragment for the rest of a 1500-byte MTU.
    let mut lens = vec![64usize; 20];
    lens.extend([4096; 8]);
    let lens32: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
    assert!(!validate_sgl(&lens32, 1500));
    let small = SgBuffer::from_segments(lens.iter().map(|&l| vec![0xEE; l]).collect());
    assert_eq!(small.len(), data.len() as u64);

    let mut nic = nvme_nic();
    assert_eq!(
        nic.engine_mut().setup(Tag(1), small).unwrap(),
        SetupOutcome::Copied(Decline::Backend(BackendError::SegmentLayout))
    );
    let (received, offloaded) = read_one(&mut nic, Tag(1), &data, 1448);
    assert!(!offloaded);
    assert_eq!(received, data);
    let c = nic.counters();
    assert_eq!((c.setup, c.setup_fail, c.packets, c.bytes), (0, 1, 0, 0));
    let s = nic.engine().stats();
    assert_eq!((s.setup_failures, s.bytes_placed), (1, 0));
    assert_eq!(s.bytes_copied, data.len() as u64);
    assert_eq!(nic.stats().dma_bytes, 0);

    // Page-sized entries: accepted and placed.
    let mut nic = nvme_nic();
    let pages = SgBuffer::from_segments(data.chunks(4096).map(|c| vec![0xEE; c.len()]).collect());
    assert_eq!(
        nic.engine_mut().setup(Tag(1), pages).unwrap(),
        SetupOutcome::Offloaded
    );
    let (received, offloaded) = read_one(&mut nic, Tag(1), &data, 1448);
    assert!(offloaded);
    assert_eq!(received, data);
    let c = nic.counters();
    assert_eq!((c.setup, c.setup_fail, c.bytes), (1, 0, data.len() as u64));
    assert_eq!(nic.engine().stats().bytes_copied, 0);
}

/// The check reads the MTU at every setup: 17 entries of 512 bytes and then pages (32.5 KiB,
/// above the threshold) are accepted at 1500 bytes and refused at 9000 (the first 17 entries
/// hold 8704 bytes, so a jumbo packet starting with them needs an 18th fragment).
#[test]
fn the_shape_check_follows_the_mtu() {
    let mut lens = vec![512u32; 17];
    lens.extend([4096; 6]);
    assert!(validate_sgl(&lens, 1500));
    assert!(!validate_sgl(&lens, 9000));
    for (mtu, expected) in [
        (1500, SetupOutcome::Offloaded),
        (
            9000,
            SetupOutcome::Copied(Decline::Backend(BackendError::SegmentLayout)),
        ),
    ] {
        let mut model = ModelConfig::default();
        model.caps.mtu = mtu;
        let config = QueueConfig::new(NVME_TCP, QueueId(1));
        let mut e = Engine::new(
            NvmeTcpHost::new(),
            Mlx5Backend::new(Model::with_config(model)),
            config,
            EngineOptions::default(),
        );
        let buffer = SgBuffer::from_segments(lens.iter().map(|&l| vec![0; l as usize]).collect());
        assert_eq!(e.setup(Tag(0), buffer).unwrap(), expected, "mtu {mtu}");
    }
}

/// The counters under the series' `rx_nvmeotcp_*` names, each where the driver counts it.
#[test]
fn counters_carry_the_series_names() {
    let mut nic = nvme_nic();
    let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let pages = SgBuffer::from_segments(data.chunks(4096).map(|c| vec![0; c.len()]).collect());
    assert_eq!(
        nic.engine_mut().setup(Tag(2), pages).unwrap(),
        SetupOutcome::Offloaded
    );
    // Declined by the driver (counted in setup_fail); a buffer beyond the limits (e.g. 600
    // segments) would be declined by the engine before the driver sees it.
    let mut small = vec![vec![0; 64]; 20];
    small.extend(vec![vec![0; 4096]; 8]);
    assert_eq!(
        nic.engine_mut()
            .setup(Tag(3), SgBuffer::from_segments(small))
            .unwrap(),
        SetupOutcome::Copied(Decline::Backend(BackendError::SegmentLayout))
    );
    let (received, offloaded) = read_one(&mut nic, Tag(2), &data, 1448);
    assert!(offloaded && received == data);
    let c = nic.counters();
    let named = c.named();
    let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "rx_nvmeotcp_sk_add",
            "rx_nvmeotcp_sk_add_fail",
            "rx_nvmeotcp_sk_del",
            "rx_nvmeotcp_ddp_setup",
            "rx_nvmeotcp_ddp_setup_fail",
            "rx_nvmeotcp_ddp_teardown",
            "rx_nvmeotcp_drop",
            "rx_nvmeotcp_resync",
            "rx_nvmeotcp_packets",
            "rx_nvmeotcp_bytes",
        ]
    );
    let values: Vec<u64> = named.iter().map(|(_, v)| *v).collect();
    // 40,000 bytes in 1448-byte segments: the header segment places 1376 bytes (72 bytes of
    // header), then 27 full segments and the last one with the CapsuleResp.
    let segments = (24 + 40_000 + 24u64).div_ceil(1448);
    assert_eq!(values, [1, 0, 0, 1, 1, 1, 0, 0, segments, 40_000]);
    assert_eq!(
        values,
        [
            c.sk_add,
            c.sk_add_fail,
            c.sk_del,
            c.setup,
            c.setup_fail,
            c.teardown,
            c.drop,
            c.resync,
            c.packets,
            c.bytes
        ]
    );
}

/// A stand-in for the iSCSI plugin (same protocol id): 8-byte header (tag, length), then data.
struct FakeIscsi;

const ISCSI: ProtocolId = ProtocolId("iscsi");

impl Protocol for FakeIscsi {
    type Header = ();
    type Error = HeaderError;

    fn id(&self) -> ProtocolId {
        ISCSI
    }
    fn prefix_len(&self) -> usize {
        8
    }
    fn max_header_len(&self) -> usize {
        8
    }
    fn frame(&mut self, _prefix: &[u8]) -> Result<HeaderFrame, HeaderError> {
        Ok(HeaderFrame {
            len: 8,
            digest: false,
        })
    }
    fn parse(&mut self, h: &[u8]) -> Result<Parsed<()>, HeaderError> {
        let tag = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let layout = PduLayout {
            data_len: len,
            placement: Some(Placement {
                tag: Tag(tag),
                offset: 0,
            }),
            ..PduLayout::header_only(8)
        };
        Ok(Parsed { layout, header: () })
    }
}

#[test]
fn iscsi_is_declined_and_runs_in_software() {
    let backend = Mlx5Backend::new(Model::new());
    assert!(backend.limits(ISCSI).is_none());
    let config = QueueConfig::new(ISCSI, QueueId(4));
    let mut nic = Nic::new(FakeIscsi, Model::new(), config, EngineOptions::default());
    assert!(!nic.engine().is_offloaded());
    let data = vec![0x42u8; 40_000];
    let outcome = nic
        .engine_mut()
        .setup(Tag(1), SgBuffer::zeroed(data.len()))
        .unwrap();
    assert_eq!(outcome, SetupOutcome::Copied(Decline::QueueNotOffloaded));
    let mut stream = Vec::new();
    stream.extend_from_slice(&1u32.to_le_bytes());
    stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
    stream.extend_from_slice(&data);
    for (i, seg) in stream.chunks(1448).enumerate() {
        nic.deliver(TcpSeq((i * 1448) as u32), seg).unwrap();
    }
    nic.engine_mut().teardown(Tag(1)).unwrap();
    let mut buffer = None;
    while let Some(ev) = nic.engine_mut().poll_event() {
        if let Event::Released {
            buffer: b,
            offloaded,
            ..
        } = ev
        {
            assert!(!offloaded);
            buffer = Some(b);
        }
    }
    assert_eq!(buffer.expect("released").into_vec(), data);
    let s = nic.engine().stats();
    assert_eq!(
        (s.bytes_copied, s.bytes_placed, s.queues_add_failed),
        (40_000, 0, 1)
    );
    // The engine never offers the queue: the driver creates nothing.
    let c = nic.counters();
    assert_eq!((c.sk_add, c.sk_add_fail, c.packets, c.bytes), (0, 0, 0, 0));
}
