//! The receive engine end to end (framing, placement, digests) per protocol, beside baselines
//! measured in the same run on the same payload: memcpy alone, copy-then-CRC (two passes), and a
//! naive receiver that copies every PDU's payload into an intermediate buffer first.
//!
//! One read of SIZE bytes arrives as data PDUs of up to 128 KiB, in 64 KiB receive-buffer pieces.
//! `tiny_pdus` measures per-PDU overhead: 512-byte PDUs.
//!
//! Run: `cargo bench -p ulp-ddp-bench --bench engine`
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::digest::{Crc32c, crc32c};
use ulp_ddp_core::{Engine, EngineOptions, Event, Piece, QueueConfig, QueueId, SgBuffer, Tag};
use ulp_nvme_tcp::wire::{C2hDataRepr, Digests, Pda};
use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};

const PIECE: usize = 64 * 1024;

fn payload(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// The C2HData PDUs carrying `data` for CID 1, `pdu` bytes each.
fn nvme_stream(data: &[u8], pdu: usize, digests: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(pdu).enumerate() {
        let repr = C2hDataRepr {
            cccid: 1,
            datao: (i * pdu) as u32,
            datal: chunk.len() as u32,
            last_pdu: (i + 1) * pdu >= data.len(),
            success: false,
        };
        repr.emit(&mut out, digests, Pda::ZERO, chunk)
            .expect("emit");
    }
    out
}

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

/// Registers a buffer, feeds the stream, tears down, returns the buffer for reuse.
fn run_engine(e: &mut Engine<NvmeTcpHost, SwBackend>, stream: &[u8], buf: Vec<u8>) -> Vec<u8> {
    e.setup(Tag(1), SgBuffer::from_vec(buf)).expect("setup");
    for piece in stream.chunks(PIECE) {
        e.receive(Piece::bytes(piece)).expect("receive");
    }
    e.teardown(Tag(1)).expect("teardown");
    let mut back = None;
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released { buffer, .. } => back = Some(buffer.into_vec()),
            Event::Data { digest, .. } => assert!(digest.is_ok()),
            _ => {}
        }
    }
    back.expect("released")
}

/// A receiver without DDP: every PDU's payload is copied into an intermediate buffer, then
/// into the destination, then digested.
fn naive(stream: &[u8], dst: &mut [u8], staging: &mut Vec<u8>, digests: Digests) {
    let mut at = 0;
    while at < stream.len() {
        let layout = ulp_nvme_tcp::wire::Layout::parse(&stream[at..], digests).expect("layout");
        let (repr, _) = C2hDataRepr::parse(&stream[at..], digests).expect("c2h");
        let data = &stream[at + layout.data_offset..at + layout.data_offset + layout.data_len];
        staging.clear();
        staging.extend_from_slice(data);
        let o = repr.datao as usize;
        dst[o..o + data.len()].copy_from_slice(staging);
        if digests.data {
            black_box(crc32c(&dst[o..o + data.len()]));
        }
        at += layout.plen;
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/nvme-tcp/sw");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for size in [4 << 10, 128 << 10, 1 << 20] {
        let data = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (name, digests) in [("plain", Digests::NONE), ("digests", Digests::BOTH)] {
            let stream = nvme_stream(&data, 128 << 10, digests);
            let mut e = engine(digests);
            let mut buf = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("engine/{name}"), size), |b| {
                b.iter(|| {
                    let back = run_engine(&mut e, black_box(&stream), std::mem::take(&mut buf));
                    buf = back;
                })
            });
            let mut staging = Vec::with_capacity(128 << 10);
            let mut dst = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("naive/{name}"), size), |b| {
                b.iter(|| naive(black_box(&stream), &mut dst, &mut staging, digests))
            });
        }
        let mut dst = vec![0u8; size];
        group.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| dst.copy_from_slice(black_box(&data)))
        });
        group.bench_function(BenchmarkId::new("copy_then_crc", size), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&data));
                black_box(crc32c(&dst))
            })
        });
        group.bench_function(BenchmarkId::new("fused", size), |b| {
            b.iter(|| {
                let mut crc = Crc32c::new();
                ulp_ddp_core::digest::copy_with_crc(&mut dst, black_box(&data), Some(&mut crc));
                black_box(crc.value())
            })
        });
    }
    group.finish();

    // Per-PDU overhead: 1 MiB in 512-byte PDUs (2048 PDUs).
    let mut group = c.benchmark_group("engine/nvme-tcp/sw/tiny_pdus");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let size = 1 << 20;
    let data = payload(size);
    group.throughput(Throughput::Elements((size / 512) as u64));
    for (name, digests) in [("plain", Digests::NONE), ("digests", Digests::BOTH)] {
        let stream = nvme_stream(&data, 512, digests);
        let mut e = engine(digests);
        let mut buf = vec![0u8; size];
        group.bench_function(name, |b| {
            b.iter(|| {
                let back = run_engine(&mut e, black_box(&stream), std::mem::take(&mut buf));
                buf = back;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
