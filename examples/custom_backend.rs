//! A DDP backend of your own, checked by the conformance kit before it meets a socket.
//!
//! `MappingTable` is the control half of a device: it offloads NVMe/TCP queues within its
//! limits, records each command's mapping at setup, and reports every teardown as an event, as
//! hardware does. It places no bytes itself, so the engine's CPU data mover places them; a real
//! device would hand placed bytes to the engine as `Piece::Placed`. `run_all` drives it through
//! the same checks the software backend and the mlx5 model pass (limits, queue lifecycle,
//! setup/teardown, declines, placement with digests, hostile PDUs, resync) and panics naming
//! the first broken rule. Run: `cargo run -p ulp-ddp-examples --example custom_backend`.
use std::collections::{HashMap, VecDeque};

use ulp_ddp_core::backend::{BackendEvent, DdpIo};
use ulp_ddp_core::digest::{self, Crc32c};
use ulp_ddp_core::{
    BackendError, DdpBackend, Limits, ProtocolId, QueueConfig, QueueId, Stats, Tag, TcpSeq,
};
use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};

/// Mapped tags per queue, and the completions not yet polled.
#[derive(Debug, Default)]
struct MappingTable {
    queues: HashMap<QueueId, HashMap<Tag, u64>>, // tag → mapped bytes
    events: HashMap<QueueId, VecDeque<BackendEvent>>,
    stats: Stats,
}

impl DdpBackend for MappingTable {
    fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
        (protocol == NVME_TCP).then(|| {
            let mut limits = Limits::unlimited(protocol);
            (limits.max_queues, limits.max_queue_depth) = (8, 1024);
            (limits.max_segments, limits.io_threshold) = (16, 4096); // small I/O is copied
            limits
        })
    }

    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        let result = match self.limits(config.protocol) {
            None => Err(BackendError::UnsupportedProtocol(config.protocol)),
            Some(_) if self.queues.contains_key(&config.queue_id) => {
                Err(BackendError::QueueExists(config.queue_id))
            }
            Some(limits) if self.queues.len() >= limits.max_queues as usize => {
                Err(BackendError::TooManyQueues)
            }
            Some(_) => {
                self.queues.insert(config.queue_id, HashMap::new());
                Ok(())
            }
        };
        match result {
            Ok(()) => self.stats.queues_added += 1,
            Err(_) => self.stats.queues_add_failed += 1,
        }
        result
    }

    fn queue_del(&mut self, queue: QueueId) {
        if self.queues.remove(&queue).is_some() {
            self.stats.queues_deleted += 1;
        }
        self.events.remove(&queue);
    }

    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        let result = match self.queues.get_mut(&queue) {
            None => Err(BackendError::UnknownQueue(queue)),
            Some(mapped) if mapped.contains_key(&io.tag) => Err(BackendError::TagBusy(io.tag)),
            Some(mapped) => {
                mapped.insert(io.tag, io.buffer.len());
                Ok(())
            }
        };
        match result {
            Ok(()) => self.stats.setups += 1,
            Err(_) => self.stats.setup_failures += 1, // the kit checks this is counted
        }
        result
    }

    fn teardown(&mut self, queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        let mapped = self
            .queues
            .get_mut(&queue)
            .ok_or(BackendError::UnknownTag(tag))?;
        mapped.remove(&tag).ok_or(BackendError::UnknownTag(tag))?;
        self.stats.teardowns += 1;
        self.stats.teardowns_completed += 1;
        let done = BackendEvent::TeardownDone { tag };
        self.events.entry(queue).or_default().push_back(done);
        Ok(())
    }

    fn resync_response(&mut self, _queue: QueueId, _seq: TcpSeq, _pdu_starts_here: bool) {}

    fn poll_event(&mut self, queue: QueueId) -> Option<BackendEvent> {
        self.events.get_mut(&queue)?.pop_front()
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        digest::copy_with_crc(dst, src, crc);
    }
}

fn main() {
    ulp_ddp_core::testkit::run_all::<MappingTable, NvmeTcpHost>(MappingTable::default);
    println!("MappingTable passed the conformance kit with NVMe/TCP framing");
}
