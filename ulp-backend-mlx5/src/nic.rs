//! [`Nic`]: the model, the driver, TCP reassembly and the receive engine wired together.

use ulp_ddp_core::{Engine, EngineOptions, Error, Protocol, QueueConfig, QueueId, Tag, TcpSeq};

use crate::driver::{Mlx5Backend, Mlx5Stats, RxOutcome};
use crate::model::{DmaWrite, Model};
use crate::reasm::Reassembly;

/// What the harness carried between the parts.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct NicStats {
    /// Segments delivered.
    pub segments: u64,
    /// Segments the driver dropped.
    pub dropped: u64,
    /// Payload bytes the model's DMA wrote into command buffers.
    pub dma_bytes: u64,
    /// DMA writes that found no buffer to write into (a model or driver bug: always 0).
    pub dma_missed: u64,
}

/// One connection on a modelled ConnectX-7: [`deliver`](Nic::deliver) takes a TCP segment as
/// the wire hands it over and runs the device [`Model`] (which places payload through the
/// engine's buffers: the DMA), the driver's receive path ([`Mlx5Backend::rx_segment`]), TCP
/// [`Reassembly`] and the receive [`Engine`], in that order.
///
/// The engine owns the driver (which owns the model) and the buffers; the harness coordinates
/// the calls so that each borrow is short.
pub struct Nic<P: Protocol> {
    engine: Engine<P, Mlx5Backend<Model>>,
    reassembly: Reassembly,
    connection: QueueId,
    dma: Vec<DmaWrite>,
    stats: NicStats,
}

impl<P: Protocol> Nic<P> {
    /// A connection speaking `protocol` on `model`, configured by `config`, whose first stream
    /// byte has sequence number `config.rx_seq` (where the device starts tracking PDUs).
    pub fn new(protocol: P, model: Model, config: QueueConfig, options: EngineOptions) -> Self {
        let engine = Engine::new(protocol, Mlx5Backend::new(model), config, options);
        Self {
            engine,
            reassembly: Reassembly::new(config.rx_seq),
            connection: config.queue_id,
            dma: Vec::new(),
            stats: NicStats::default(),
        }
    }

    /// The receive engine (setup, teardown and events go through it).
    pub fn engine(&self) -> &Engine<P, Mlx5Backend<Model>> {
        &self.engine
    }

    /// The receive engine, mutably.
    pub fn engine_mut(&mut self) -> &mut Engine<P, Mlx5Backend<Model>> {
        &mut self.engine
    }

    /// The driver's kernel-style counters.
    pub fn counters(&self) -> Mlx5Stats {
        self.engine.backend().counters()
    }

    /// What the harness carried.
    pub fn stats(&self) -> NicStats {
        self.stats
    }

    /// The TCP reassembly queue.
    pub fn reassembly(&self) -> &Reassembly {
        &self.reassembly
    }

    /// Receives one TCP segment: `payload` starting at sequence number `seq`, in any order,
    /// duplicated or retransmitted.
    ///
    /// # Errors
    ///
    /// The engine's fatal error, if the stream became unusable ([`Error::Failed`] for every
    /// segment after that).
    pub fn deliver(&mut self, seq: TcpSeq, payload: &[u8]) -> Result<(), Error<P::Error>> {
        if self.engine.is_failed() {
            return Err(Error::Failed);
        }
        self.stats.segments += 1;
        self.dma.clear();
        self.engine.backend_mut().device_mut().receive(
            self.connection,
            seq,
            payload,
            &mut self.dma,
        );
        for w in &self.dma {
            let Some(src) = payload.get(w.src.clone()) else {
                self.stats.dma_missed += 1;
                continue;
            };
            let written = self
                .engine
                .dma_buffer(Tag(u32::from(w.ccid)))
                .is_some_and(|buffer| buffer.write_at(w.offset, src).is_ok());
            if written {
                self.stats.dma_bytes += src.len() as u64;
            } else {
                self.stats.dma_missed += 1;
            }
        }
        let segment = match self.engine.backend_mut().rx_segment(payload.len()) {
            RxOutcome::Deliver(segment) => segment,
            RxOutcome::Dropped => {
                self.stats.dropped += 1;
                return Ok(());
            }
        };
        let engine = &mut self.engine;
        self.reassembly
            .push(seq, payload, &segment, &mut |piece| engine.receive(piece))
    }
}

impl<P: Protocol> core::fmt::Debug for Nic<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nic")
            .field("engine", &self.engine)
            .field("next_seq", &self.reassembly.next_seq())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
