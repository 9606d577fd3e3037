//! The backend contract: the kernel's `ulp_ddp_dev_ops`, with its two callbacks turned into
//! polled events.

use crate::buffer::SgBuffer;
use crate::config::QueueConfig;
use crate::digest::Crc32c;
pub use crate::error::BackendError;
use crate::limits::Limits;
use crate::stats::Stats;
use crate::types::{ProtocolId, QueueId, Tag, TcpSeq};

/// One command's mapping request: the tag the command will carry on the wire and its
/// destination buffer (the kernel's `ulp_ddp_io`).
///
/// The backend may record the buffer's segment addresses and lengths: the receive engine owns
/// the buffer and neither moves nor resizes it until the backend reports
/// [`BackendEvent::TeardownDone`] for the tag.
#[derive(Clone, Copy, Debug)]
pub struct DdpIo<'a> {
    /// The command's tag.
    pub tag: Tag,
    /// Where the command's data goes.
    pub buffer: &'a SgBuffer,
}

/// Something a backend tells the receive engine, polled with [`DdpBackend::poll_event`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum BackendEvent {
    /// The device lost track of PDU boundaries and asks: does a PDU start at `seq`? The engine
    /// answers with [`DdpBackend::resync_response`] when its stream reaches `seq` (the kernel's
    /// `resync_request`).
    ResyncRequest {
        /// The proposed PDU start.
        seq: TcpSeq,
    },
    /// The mapping for `tag` is gone: the device will not write into its buffer again (the
    /// kernel's `ddp_teardown_done`).
    TeardownDone {
        /// The command whose mapping is gone.
        tag: Tag,
    },
}

/// A direct data placement backend: a NIC offload, a model of one, or the software backend.
///
/// The receive engine ([`Engine`](crate::Engine)) drives it; callers normally use the engine,
/// not the backend. One backend serves many queues. Its methods never block: a device's
/// answers (teardown completions, resync requests) come back through [`poll_event`].
///
/// # Contract
///
/// - [`setup`] happens before the command is sent; if it returns `Ok`, the device may place that
///   tag's data from then on, and must stop before it reports
///   [`BackendEvent::TeardownDone`] for the tag.
/// - [`teardown`] starts the unmapping; completion is always reported through [`poll_event`],
///   even by backends that complete at once, so that callers have one code path.
/// - [`queue_del`] removes every mapping of the queue synchronously: when it returns the device
///   writes into none of the queue's buffers.
/// - Bytes the device placed are delivered to the engine as
///   [`Piece::Placed`](crate::Piece::Placed): by then they are in the command's buffer.
///
/// [`setup`]: DdpBackend::setup
/// [`teardown`]: DdpBackend::teardown
/// [`queue_del`]: DdpBackend::queue_del
/// [`poll_event`]: DdpBackend::poll_event
pub trait DdpBackend {
    /// The backend's limits for `protocol`, or `None` if it does not offload that protocol
    /// (the engine then runs the queue in software).
    fn limits(&self, protocol: ProtocolId) -> Option<Limits>;

    /// Offloads a queue (the kernel's `sk_add`).
    ///
    /// # Errors
    ///
    /// Any [`BackendError`]; the queue then runs in software, which is not an error for the
    /// connection.
    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError>;

    /// Removes a queue and every mapping it still holds (the kernel's `sk_del`).
    fn queue_del(&mut self, queue: QueueId);

    /// Maps a command's buffer to its tag before the command is sent.
    ///
    /// # Errors
    ///
    /// Any [`BackendError`]: the command is then placed by copying.
    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError>;

    /// Starts unmapping `tag`; the completion comes from [`DdpBackend::poll_event`].
    ///
    /// # Errors
    ///
    /// [`BackendError::UnknownTag`] if the tag is not mapped (no completion follows then).
    fn teardown(&mut self, queue: QueueId, tag: Tag) -> Result<(), BackendError>;

    /// Answers a [`BackendEvent::ResyncRequest`]: whether a PDU starts at `seq`.
    fn resync_response(&mut self, queue: QueueId, seq: TcpSeq, pdu_starts_here: bool);

    /// The next event for `queue`, if any.
    fn poll_event(&mut self, queue: QueueId) -> Option<BackendEvent>;

    /// The backend's counters, summed over its queues.
    fn stats(&self) -> Stats;

    /// Copies `src` into `dst` (equal lengths) on the CPU, feeding the copied bytes into `crc`
    /// when given: the data mover for every byte the device did not place. Implementations read
    /// each source byte once from memory (fused copy and digest). It takes no `self`, so that
    /// backends shared between queues need no lock on the data path.
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>)
    where
        Self: Sized;
}

/// A backend that offloads nothing: every queue runs in software and the CPU places every byte
/// (with [`copy_with_crc`](crate::digest::copy_with_crc)). What a connection gets on a machine
/// without a DDP device.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOffload;

impl DdpBackend for NoOffload {
    fn limits(&self, _protocol: ProtocolId) -> Option<Limits> {
        None
    }

    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        Err(BackendError::UnsupportedProtocol(config.protocol))
    }

    fn queue_del(&mut self, _queue: QueueId) {}

    fn setup(&mut self, queue: QueueId, _io: &DdpIo<'_>) -> Result<(), BackendError> {
        Err(BackendError::UnknownQueue(queue))
    }

    fn teardown(&mut self, _queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        Err(BackendError::UnknownTag(tag))
    }

    fn resync_response(&mut self, _queue: QueueId, _seq: TcpSeq, _pdu_starts_here: bool) {}

    fn poll_event(&mut self, _queue: QueueId) -> Option<BackendEvent> {
        None
    }

    fn stats(&self) -> Stats {
        Stats::default()
    }

    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        crate::digest::copy_with_crc(dst, src, crc);
    }
}

/// A handle to a backend shared by several queues (one device, many connections): each engine
/// owns a clone; control operations take a lock, the data mover does not.
///
/// A backend that panicked while locked does not poison the handle: the next caller gets the
/// backend as the panic left it (the backend's own state checks apply), as with a lock that
/// has no poisoning.
#[derive(Debug)]
pub struct Shared<B> {
    inner: std::sync::Arc<std::sync::Mutex<B>>,
}

impl<B> Shared<B> {
    /// Shares `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(backend)),
        }
    }

    /// Runs `f` with the backend locked (for statistics or a device model's packet input).
    pub fn with<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, B> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<B> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Self {
            inner: std::sync::Arc::clone(&self.inner),
        }
    }
}

impl<B: DdpBackend> DdpBackend for Shared<B> {
    fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
        self.lock().limits(protocol)
    }

    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        self.lock().queue_add(config)
    }

    fn queue_del(&mut self, queue: QueueId) {
        self.lock().queue_del(queue);
    }

    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        self.lock().setup(queue, io)
    }

    fn teardown(&mut self, queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        self.lock().teardown(queue, tag)
    }

    fn resync_response(&mut self, queue: QueueId, seq: TcpSeq, pdu_starts_here: bool) {
        self.lock().resync_response(queue, seq, pdu_starts_here);
    }

    fn poll_event(&mut self, queue: QueueId) -> Option<BackendEvent> {
        self.lock().poll_event(queue)
    }

    fn stats(&self) -> Stats {
        self.lock().stats()
    }

    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        B::copy_with_crc(dst, src, crc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueConfig;

    #[test]
    fn no_offload_declines_everything() {
        let mut b = NoOffload;
        let p = ProtocolId("p");
        assert!(b.limits(p).is_none());
        let cfg = QueueConfig::new(p, QueueId(1));
        assert_eq!(b.queue_add(&cfg), Err(BackendError::UnsupportedProtocol(p)));
        let buffer = SgBuffer::zeroed(4);
        let io = DdpIo {
            tag: Tag(0),
            buffer: &buffer,
        };
        assert!(b.setup(QueueId(1), &io).is_err());
        assert_eq!(
            b.teardown(QueueId(1), Tag(0)),
            Err(BackendError::UnknownTag(Tag(0)))
        );
        assert_eq!(b.poll_event(QueueId(1)), None);
        assert_eq!(b.stats(), Stats::default());
    }

    /// A backend that counts calls, to see them through a shared handle.
    #[derive(Default)]
    struct Counting {
        queues: u32,
        events: Vec<BackendEvent>,
    }

    impl DdpBackend for Counting {
        fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
            Some(Limits::unlimited(protocol))
        }
        fn queue_add(&mut self, _config: &QueueConfig) -> Result<(), BackendError> {
            self.queues += 1;
            Ok(())
        }
        fn queue_del(&mut self, _queue: QueueId) {
            self.queues -= 1;
        }
        fn setup(&mut self, _queue: QueueId, _io: &DdpIo<'_>) -> Result<(), BackendError> {
            Ok(())
        }
        fn teardown(&mut self, _queue: QueueId, tag: Tag) -> Result<(), BackendError> {
            self.events.push(BackendEvent::TeardownDone { tag });
            Ok(())
        }
        fn resync_response(&mut self, _queue: QueueId, _seq: TcpSeq, _ok: bool) {}
        fn poll_event(&mut self, _queue: QueueId) -> Option<BackendEvent> {
            self.events.pop()
        }
        fn stats(&self) -> Stats {
            Stats {
                queues_added: u64::from(self.queues),
                ..Stats::default()
            }
        }
        fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
            crate::digest::copy_with_crc(dst, src, crc);
        }
    }

    #[test]
    fn shared_handles_reach_one_backend() {
        let shared = Shared::new(Counting::default());
        let (mut a, mut b) = (shared.clone(), shared.clone());
        let p = ProtocolId("p");
        a.queue_add(&QueueConfig::new(p, QueueId(1))).unwrap();
        b.queue_add(&QueueConfig::new(p, QueueId(2))).unwrap();
        assert_eq!(shared.stats().queues_added, 2);
        a.teardown(QueueId(1), Tag(9)).unwrap();
        assert_eq!(
            b.poll_event(QueueId(2)),
            Some(BackendEvent::TeardownDone { tag: Tag(9) })
        );
        b.queue_del(QueueId(2));
        assert_eq!(shared.with(|c| c.queues), 1);
        let mut dst = [0u8; 3];
        let mut crc = Crc32c::new();
        <Shared<Counting> as DdpBackend>::copy_with_crc(&mut dst, b"abc", Some(&mut crc));
        assert_eq!((&dst, crc.value()), (b"abc", crate::digest::crc32c(b"abc")));
    }
}
