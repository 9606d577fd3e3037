//! Fused place+CRC32C (with ordinary stores, and with streaming stores that bypass the cache)
//! against its baselines, measured in the same run: memcpy alone and copy-then-CRC (two
//! passes), at 4 KiB, 128 KiB and 1 MiB.
//!
//! Two destination modes: `warm` (the same destination every time: cache-resident, CRC is
//! compute-bound) and `cold` (a hot source, as just received, into destinations that rotate
//! through a 256 MiB pool, as command buffers do: the realistic case).
//!
//! Run: `cargo bench -p ulp-ddp-bench --bench placement`
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ulp_backend_sw::stream::copy_with_crc_streaming;
use ulp_ddp_core::digest::{Crc32c, copy_with_crc, crc32c};

const POOL: usize = 256 << 20;

fn fill(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let mut pool = vec![1u8; POOL];
    for size in [4 << 10, 128 << 10, 1 << 20] {
        let src = fill(size);
        let slots = POOL / size;
        group.throughput(Throughput::Bytes(size as u64));
        for mode in ["warm", "cold"] {
            let mut slot = 0usize;
            let mut next = || -> std::ops::Range<usize> {
                if mode == "cold" {
                    // Stride by a prime number of slots so consecutive destinations are far
                    // apart and every slot is visited.
                    slot = (slot + 7919) % slots;
                }
                slot * size..(slot + 1) * size
            };
            group.bench_function(BenchmarkId::new(format!("memcpy/{mode}"), size), |b| {
                b.iter(|| {
                    let r = next();
                    pool[r].copy_from_slice(black_box(&src));
                })
            });
            group.bench_function(
                BenchmarkId::new(format!("copy_then_crc/{mode}"), size),
                |b| {
                    b.iter(|| {
                        let r = next();
                        let dst = &mut pool[r];
                        dst.copy_from_slice(black_box(&src));
                        black_box(crc32c(dst))
                    })
                },
            );
            group.bench_function(BenchmarkId::new(format!("fused/{mode}"), size), |b| {
                b.iter(|| {
                    let r = next();
                    let mut crc = Crc32c::new();
                    copy_with_crc(&mut pool[r], black_box(&src), Some(&mut crc));
                    black_box(crc.value())
                })
            });
            group.bench_function(
                BenchmarkId::new(format!("fused_streaming/{mode}"), size),
                |b| {
                    b.iter(|| {
                        let r = next();
                        let mut crc = Crc32c::new();
                        copy_with_crc_streaming(&mut pool[r], black_box(&src), Some(&mut crc));
                        black_box(crc.value())
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("copy_then_crc32c_crate/{mode}"), size),
                |b| {
                    b.iter(|| {
                        let r = next();
                        let dst = &mut pool[r];
                        dst.copy_from_slice(black_box(&src));
                        black_box(crc32c::crc32c(dst))
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
