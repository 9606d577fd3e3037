//! The mlx5 driver over the device model against the conformance kit, and the protocols it
//! declines.

use ulp_backend_mlx5::{IO_THRESHOLD, MAX_QUEUES, MAX_SGL, Mlx5Backend, Model, ModelConfig};
use ulp_ddp_core::testkit;
use ulp_ddp_core::{
    DdpBackend, Decline, Engine, EngineOptions, Event, HeaderError, HeaderFrame, Limits, Parsed,
    PduLayout, Placement, Protocol, ProtocolId, QueueConfig, QueueId, SetupOutcome, SgBuffer, Tag,
    TagRange,
};
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
        Err(ulp_ddp_core::BackendError::TagOutOfRange(Tag(32)))
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
        Err(ulp_ddp_core::BackendError::TooManyQueues)
    );
    assert!(!backend.has_queue(QueueId(3999)));
    backend.queue_del(QueueId(17));
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(5000))),
        Ok(())
    );
    assert_eq!(
        backend.queue_add(&QueueConfig::new(NVME_TCP, QueueId(5001))),
        Err(ulp_ddp_core::BackendError::TooManyQueues)
    );
    let c = backend.counters();
    assert_eq!((c.sk_add, c.sk_add_fail, c.sk_del), (4000, 2, 1));
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
    let mut nic =
        ulp_backend_mlx5::Nic::new(FakeIscsi, Model::new(), config, EngineOptions::default());
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
        nic.deliver(ulp_ddp_core::TcpSeq((i * 1448) as u32), seg)
            .unwrap();
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
