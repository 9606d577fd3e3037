//! Streaming stores: the CPU data mover for destinations nobody reads soon.
//!
//! An ordinary copy into memory that is not in cache first reads every destination line
//! (read-for-ownership), then writes it back later: a cold destination costs twice the memory
//! traffic and pollutes the cache with lines the copy only overwrites. Non-temporal
//! ("streaming") stores write whole lines straight to memory, as a DMA engine does: on this
//! project's machine, a hot source into cold 128 KiB command buffers goes about 2x faster than
//! `memcpy` (see docs/PERFORMANCE.md). The price: the data is not in cache afterwards, so a
//! consumer that reads it at once pays a miss per line; for buffers that stay in cache
//! (small, reused), [`ulp_ddp_core::digest::copy_with_crc`] is faster.
//!
//! The x86-64 implementation is the only `unsafe` code in the workspace: SSE2 loads and
//! `movntdq` stores (SSE2 is part of the x86-64 baseline, so no runtime detection), then one
//! `sfence` so that the stores are ordered before whatever hands the buffer on. Elsewhere the
//! functions fall back to ordinary copies.

use ulp_ddp_core::digest::Crc32c;

/// Bytes digested, then streamed, per step of [`copy_with_crc_streaming`]: the source step
/// stays in L1/L2 between the digest and the copy.
pub const STREAM_CHUNK: usize = 32 * 1024;

/// Below this many bytes a copy is an ordinary one (streaming a few lines saves nothing).
pub const STREAM_MIN: usize = 1024;

/// Copies `src` into `dst` with non-temporal stores (ordinary copies for the unaligned head
/// and tail, and for copies under [`STREAM_MIN`] bytes).
///
/// # Panics
///
/// If the lengths differ.
///
/// ```
/// let src: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
/// let mut dst = vec![0u8; 10_000];
/// ulp_backend_sw::stream::copy_streaming(&mut dst[..], &src);
/// assert_eq!(dst, src);
/// ```
pub fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_streaming needs equal lengths");
    stream_unfenced(dst, src);
    fence();
}

/// [`copy_with_crc`](ulp_ddp_core::digest::copy_with_crc) with streaming stores: each
/// [`STREAM_CHUNK`] of the source is digested (fed into `crc` when given), then streamed to
/// `dst`; the source is read from memory once.
///
/// # Panics
///
/// If the lengths differ.
///
/// ```
/// use ulp_backend_sw::stream::copy_with_crc_streaming;
/// use ulp_ddp_core::digest::{Crc32c, crc32c};
///
/// let src = vec![7u8; 100_000];
/// let mut dst = vec![0u8; 100_000];
/// let mut crc = Crc32c::new();
/// copy_with_crc_streaming(&mut dst, &src, Some(&mut crc));
/// assert_eq!(dst, src);
/// assert_eq!(crc.value(), crc32c(&src));
/// ```
pub fn copy_with_crc_streaming(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_with_crc_streaming needs equal lengths"
    );
    match crc {
        None => stream_unfenced(dst, src),
        Some(crc) => {
            for (d, s) in dst.chunks_mut(STREAM_CHUNK).zip(src.chunks(STREAM_CHUNK)) {
                crc.update(s);
                stream_unfenced(d, s);
            }
        }
    }
    fence();
}

/// The copy without the closing fence (callers fence once at the end).
fn stream_unfenced(dst: &mut [u8], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    if dst.len() < STREAM_MIN {
        dst.copy_from_slice(src);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Head up to the first 16-byte aligned destination address, a body of whole 64-byte
        // blocks, and a tail: only the body is streamed.
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let (dst_head, dst_rest) = dst.split_at_mut(head);
        let (src_head, src_rest) = src.split_at(head);
        dst_head.copy_from_slice(src_head);
        let body = dst_rest.len() / 64 * 64;
        let (dst_body, dst_tail) = dst_rest.split_at_mut(body);
        let (src_body, src_tail) = src_rest.split_at(body);
        for (d, s) in dst_body.chunks_exact_mut(64).zip(src_body.chunks_exact(64)) {
            stream_block(d, s);
        }
        dst_tail.copy_from_slice(src_tail);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Streams one 64-byte block; `d` must start at a 16-byte aligned address.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stream_block(d: &mut [u8], s: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128};
    assert!(d.len() == 64 && s.len() == 64 && d.as_ptr().align_offset(16) == 0);
    let sp = s.as_ptr().cast::<__m128i>();
    let dp = d.as_mut_ptr().cast::<__m128i>();
    // SAFETY: `s` holds 64 readable bytes, so the four unaligned 16-byte loads at offsets 0, 16,
    // 32, 48 stay inside it (`_mm_loadu_si128` has no alignment requirement). `d` holds 64
    // writable bytes that nothing else borrows (`&mut`), starting at a 16-byte aligned address
    // (asserted above), so the four 16-byte non-temporal stores are in bounds and aligned as
    // `_mm_stream_si128` requires. SSE2 is part of the x86-64 baseline.
    unsafe {
        let a = _mm_loadu_si128(sp);
        let b = _mm_loadu_si128(sp.add(1));
        let c = _mm_loadu_si128(sp.add(2));
        let e = _mm_loadu_si128(sp.add(3));
        store(dp, a);
        store(dp.add(1), b);
        store(dp.add(2), c);
        store(dp.add(3), e);
    }
}

/// One 16-byte non-temporal store (under Miri, which cannot run the instruction's inline
/// assembly, an ordinary aligned store to the same address, so Miri still checks it).
///
/// # Safety
///
/// `p` must be valid for a 16-byte write and 16-byte aligned.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store(p: *mut std::arch::x86_64::__m128i, v: std::arch::x86_64::__m128i) {
    // SAFETY: the caller guarantees `p` is valid for 16 bytes and 16-byte aligned.
    #[cfg(not(miri))]
    unsafe {
        std::arch::x86_64::_mm_stream_si128(p, v);
    }
    // SAFETY: as above; `write` requires exactly that validity and alignment.
    #[cfg(miri)]
    unsafe {
        p.write(v);
    }
}

/// Orders the streaming stores before later stores (and so before a release that hands the
/// buffer to another thread).
fn fence() {
    // SAFETY: `sfence` has no operands and no preconditions; SSE is part of the x86-64
    // baseline, so the instruction exists on every x86-64 CPU.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
    // Miri models the streaming stores as ordinary stores but has no `sfence`.
    #[cfg(miri)]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulp_ddp_core::digest::crc32c;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect()
    }

    /// Every length around the thresholds and block sizes, at every destination and source
    /// misalignment within a line: exact copies, bytes around the destination untouched.
    #[test]
    fn copies_exactly_at_every_alignment() {
        // Under Miri (which checks the unsafe loads and stores) a smaller grid.
        let lens: &[usize] = if cfg!(miri) {
            &[0, 63, 1024, 1089]
        } else {
            &[
                0, 1, 15, 63, 64, 65, 1023, 1024, 1025, 1088, 4096, 4097, 33_000, 70_001,
            ]
        };
        let dst_offs: &[usize] = if cfg!(miri) {
            &[0, 1, 15, 16, 33]
        } else {
            &[0; 0]
        };
        for &len in lens {
            let src_all = data(len + 64);
            for src_off in [0, 1, 7, 16] {
                let src = &src_all[src_off..src_off + len];
                let every: Vec<usize> = (0..64).collect();
                let dst_offs = if cfg!(miri) { dst_offs } else { &every[..] };
                for &dst_off in dst_offs {
                    let mut buf = vec![0xA5u8; len + 128];
                    copy_streaming(&mut buf[dst_off..dst_off + len], src);
                    assert!(
                        buf[dst_off..dst_off + len] == *src,
                        "len {len} dst+{dst_off}"
                    );
                    assert!(buf[..dst_off].iter().all(|&b| b == 0xA5));
                    assert!(buf[dst_off + len..].iter().all(|&b| b == 0xA5));
                }
            }
        }
    }

    #[test]
    fn digest_matches_and_spans_chunks() {
        let lens: &[usize] = if cfg!(miri) {
            &[0, 1500, STREAM_CHUNK + 3]
        } else {
            &[
                0,
                100,
                5000,
                STREAM_CHUNK - 1,
                STREAM_CHUNK + 3,
                3 * STREAM_CHUNK + 17,
            ]
        };
        for &len in lens {
            let src = data(len);
            let mut dst = vec![0u8; len + 3];
            let mut crc = Crc32c::new();
            copy_with_crc_streaming(&mut dst[3..], &src, Some(&mut crc));
            assert!(dst[3..] == src[..]);
            assert_eq!(crc.value(), crc32c(&src), "len {len}");
            let mut again = vec![0u8; len];
            copy_with_crc_streaming(&mut again, &src, None);
            assert!(again == src);
        }
    }

    #[test]
    #[should_panic(expected = "equal lengths")]
    fn unequal_lengths_panic() {
        copy_streaming(&mut [0u8; 4], &[0u8; 5]);
    }
}
