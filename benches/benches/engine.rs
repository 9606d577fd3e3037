//! The receive engine end to end (framing, placement, digests) per protocol and per placement
//! path, beside baselines measured in the same run on the same payload:
//!
//! - `copy/*`: the CPU places every payload byte (software backend, fused copy+CRC32C);
//! - `device/*`: a device placed the payload and vouched for the digests; the engine only
//!   frames headers (the CPU cost left with a ConnectX-7-style offload);
//! - `naive/*`: a receiver without DDP: payload copied into a staging buffer, then into the
//!   destination, then digested;
//! - `memcpy`, `copy_then_crc`: copying the payload once, and once plus a digest pass.
//!
//! One read of SIZE bytes arrives as data PDUs of up to 128 KiB, in 64 KiB receive-buffer pieces.
//! The `*/tiny_pdus` groups measure per-PDU overhead: 1 MiB in 512-byte PDUs.
//!
//! Run: `cargo bench -p ulp-ddp-bench --bench engine`
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::digest::{Crc32c, crc32c};
use ulp_ddp_core::{
    Engine, EngineOptions, Event, Piece, Protocol, QueueConfig, QueueId, SgBuffer, Tag,
};

const PIECE: usize = 64 * 1024;
const PDU: usize = 128 * 1024;
const TAG: u32 = 1;

/// Where one PDU's parts lie in the stream.
#[derive(Clone, Copy)]
struct Parts {
    start: usize,
    data: usize,
    data_end: usize,
    end: usize,
    offset: usize,
}

/// A protocol under test: its plugin and an encoder of read-data PDUs.
trait Bench {
    type P: Protocol;
    const NAME: &'static str;
    fn plugin(digests: bool) -> Self::P;
    /// Appends one data PDU for `TAG` at `offset`, returning its parts.
    fn encode(out: &mut Vec<u8>, offset: usize, data: &[u8], last: bool, digests: bool) -> Parts;
}

struct Nvme;

impl Bench for Nvme {
    type P = ulp_nvme_tcp::NvmeTcpHost;
    const NAME: &'static str = "nvme-tcp";

    fn plugin(digests: bool) -> Self::P {
        ulp_nvme_tcp::NvmeTcpHost::with_digests(nvme_digests(digests))
    }

    fn encode(out: &mut Vec<u8>, offset: usize, data: &[u8], last: bool, digests: bool) -> Parts {
        let start = out.len();
        let repr = ulp_nvme_tcp::wire::C2hDataRepr {
            cccid: TAG as u16,
            datao: offset as u32,
            datal: data.len() as u32,
            last_pdu: last,
            success: false,
        };
        let layout = repr
            .emit(
                out,
                nvme_digests(digests),
                ulp_nvme_tcp::wire::Pda::ZERO,
                data,
            )
            .expect("emit C2HData");
        Parts {
            start,
            data: start + layout.data_offset,
            data_end: start + layout.data_offset + data.len(),
            end: out.len(),
            offset,
        }
    }
}

fn nvme_digests(on: bool) -> ulp_nvme_tcp::wire::Digests {
    ulp_nvme_tcp::wire::Digests {
        header: on,
        data: on,
    }
}

struct Iscsi;

impl Bench for Iscsi {
    type P = ulp_iscsi::IscsiInitiator;
    const NAME: &'static str = "iscsi";

    fn plugin(digests: bool) -> Self::P {
        let mut p = ulp_iscsi::IscsiInitiator::with_digests(iscsi_digests(digests));
        p.set_max_recv_data_segment_len(PDU as u32);
        p
    }

    fn encode(out: &mut Vec<u8>, offset: usize, data: &[u8], last: bool, digests: bool) -> Parts {
        use ulp_iscsi::wire::{Itt, Lun, Ttt, data_in::DataInRepr};
        let start = out.len();
        let repr = DataInRepr {
            final_: last,
            ack: false,
            status: None,
            lun: Lun::single_level(0),
            itt: Itt(TAG),
            ttt: Ttt::RESERVED,
            exp_cmd_sn: 1,
            max_cmd_sn: 64,
            data_sn: (offset / PDU) as u32,
            buffer_offset: offset as u32,
            data,
        };
        let d = iscsi_digests(digests);
        let header = 48 + if digests { 4 } else { 0 };
        out.resize(start + repr.buffer_len(d), 0);
        let n = repr.emit(&mut out[start..], d).expect("emit Data-In");
        out.truncate(start + n);
        Parts {
            start,
            data: start + header,
            data_end: start + header + data.len(),
            end: out.len(),
            offset,
        }
    }
}

fn iscsi_digests(on: bool) -> ulp_iscsi::wire::Digests {
    ulp_iscsi::wire::Digests {
        header: on,
        data: on,
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

fn stream<B: Bench>(data: &[u8], pdu: usize, digests: bool) -> (Vec<u8>, Vec<Parts>) {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(pdu).enumerate() {
        let last = (i + 1) * pdu >= data.len();
        parts.push(B::encode(&mut out, i * pdu, chunk, last, digests));
    }
    (out, parts)
}

fn engine<B: Bench>(digests: bool) -> Engine<B::P, SwBackend> {
    let plugin = B::plugin(digests);
    let config = QueueConfig::new(plugin.id(), QueueId(1)).with_digests(digests, digests);
    Engine::new(plugin, SwBackend::new(), config, EngineOptions::default())
}

/// Registers `buf`, runs `feed`, tears down, returns the buffer for the next iteration.
fn round<P: Protocol>(
    e: &mut Engine<P, SwBackend>,
    buf: Vec<u8>,
    feed: impl FnOnce(&mut Engine<P, SwBackend>),
) -> Vec<u8> {
    e.setup(Tag(TAG), SgBuffer::from_vec(buf)).expect("setup");
    feed(e);
    e.teardown(Tag(TAG)).expect("teardown");
    let mut back = None;
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released { buffer, .. } => back = Some(buffer.into_vec()),
            Event::Data { digest, .. } => assert!(digest.is_ok()),
            other => panic!("unexpected {other:?}"),
        }
    }
    back.expect("released")
}

fn feed_copy<P: Protocol>(e: &mut Engine<P, SwBackend>, stream: &[u8]) {
    for piece in stream.chunks(PIECE) {
        e.receive(Piece::bytes(piece)).expect("receive");
    }
}

/// What the engine sees behind a device that placed every payload byte and vouched for it.
fn feed_device<P: Protocol>(e: &mut Engine<P, SwBackend>, stream: &[u8], parts: &[Parts]) {
    for p in parts {
        let ok = |data| Piece::Bytes {
            data,
            digest_ok: true,
        };
        e.receive(ok(&stream[p.start..p.data])).expect("header");
        e.receive(Piece::Placed {
            tag: Tag(TAG),
            offset: p.offset as u64,
            len: (p.data_end - p.data) as u32,
            digest_ok: true,
        })
        .expect("placed");
        if p.end > p.data_end {
            e.receive(ok(&stream[p.data_end..p.end])).expect("trailer");
        }
    }
}

/// A receiver without DDP: staging copy, destination copy, digest pass.
fn naive(stream: &[u8], parts: &[Parts], dst: &mut [u8], staging: &mut Vec<u8>, digests: bool) {
    for p in parts {
        staging.clear();
        staging.extend_from_slice(&stream[p.data..p.data_end]);
        let d = &mut dst[p.offset..p.offset + staging.len()];
        d.copy_from_slice(staging);
        if digests {
            black_box(crc32c(d));
        }
    }
}

fn protocol<B: Bench>(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("engine/{}", B::NAME));
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    for size in [4 << 10, 128 << 10, 1 << 20] {
        let data = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (name, digests) in [("plain", false), ("digests", true)] {
            let (stream, parts) = stream::<B>(&data, PDU, digests);
            let mut e = engine::<B>(digests);
            let mut buf = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("copy/{name}"), size), |b| {
                b.iter(|| {
                    let s = black_box(&stream);
                    buf = round(&mut e, std::mem::take(&mut buf), |e| feed_copy(e, s));
                })
            });
            group.bench_function(BenchmarkId::new(format!("device/{name}"), size), |b| {
                b.iter(|| {
                    let s = black_box(&stream);
                    buf = round(&mut e, std::mem::take(&mut buf), |e| {
                        feed_device(e, s, &parts)
                    });
                })
            });
            let mut staging = Vec::with_capacity(PDU);
            let mut dst = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("naive/{name}"), size), |b| {
                b.iter(|| naive(black_box(&stream), &parts, &mut dst, &mut staging, digests))
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

    // Per-PDU overhead: 1 MiB in 512-byte PDUs (2048 PDUs); throughput in PDUs.
    let mut group = c.benchmark_group(format!("engine/{}/tiny_pdus", B::NAME));
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
    let size = 1 << 20;
    let data = payload(size);
    group.throughput(Throughput::Elements((size / 512) as u64));
    for (name, digests) in [("plain", false), ("digests", true)] {
        let (stream, parts) = stream::<B>(&data, 512, digests);
        let mut e = engine::<B>(digests);
        let mut buf = vec![0u8; size];
        group.bench_function(BenchmarkId::new("copy", name), |b| {
            b.iter(|| {
                let s = black_box(&stream);
                buf = round(&mut e, std::mem::take(&mut buf), |e| feed_copy(e, s));
            })
        });
        group.bench_function(BenchmarkId::new("device", name), |b| {
            b.iter(|| {
                let s = black_box(&stream);
                buf = round(&mut e, std::mem::take(&mut buf), |e| {
                    feed_device(e, s, &parts)
                });
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    protocol::<Nvme>(c);
    protocol::<Iscsi>(c);
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
