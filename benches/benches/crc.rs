//! The CRC32C choice, by measurement: the `crc32c` crate (SSE4.2 `crc32` instruction, three
//! streams) against `crc-fast` (carry-less multiply folding, AVX-512 where present), which
//! `ulp_ddp_core::digest` uses. Same data, same run.
//!
//! Run: `cargo bench -p ulp-ddp-bench --bench crc`
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    // 24 and 52: NVMe/TCP and iSCSI headers with their digest; 512: a small PDU's data.
    for size in [24usize, 52, 512, 4 << 10, 128 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size as u32).map(|i| (i * 31 + 7) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("crc32c_crate", size), |b| {
            b.iter(|| crc32c::crc32c(black_box(&data)))
        });
        group.bench_function(BenchmarkId::new("crc_fast", size), |b| {
            b.iter(|| ulp_ddp_core::digest::crc32c(black_box(&data)))
        });
        group.bench_function(BenchmarkId::new("crc_fast_streaming_8k", size), |b| {
            b.iter(|| {
                let mut crc = ulp_ddp_core::digest::Crc32c::new();
                for chunk in black_box(&data).chunks(8192) {
                    crc.update(chunk);
                }
                crc.value()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, crc);
criterion_main!(benches);
