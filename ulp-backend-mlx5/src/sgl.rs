//! The scatter-gather shape check of `mlx5e_nvmeotcp_ddp_setup` (`mlx5e_nvmeotcp_validate_sgl`
//! and its prefix and suffix checks).
//!
//! The kernel rebuilds every received packet as a socket buffer whose fragments point into the
//! command's buffer, one fragment per scatter-gather entry the packet touches, and the bytes the
//! device did not place (the next PDU's header, the rest of the packet) take further fragments of
//! at most a page each. A socket buffer has at most `MAX_SKB_FRAGS` fragments, so the driver
//! refuses (`-EOPNOTSUPP`, counted in `rx_nvmeotcp_ddp_setup_fail`) a list whose entries are so
//! small that a packet of MTU size could need more; nvme-tcp then copies that command.

/// Fragments of one socket buffer (`MAX_SKB_FRAGS`, the kernel's default
/// `CONFIG_MAX_SKB_FRAGS`).
pub const MAX_SKB_FRAGS: u32 = 17;

/// Bytes per page (`PAGE_SIZE` on x86-64): the most one fragment of receive-buffer bytes holds.
pub const PAGE_SIZE: u32 = 4096;

/// Whether the driver accepts a buffer whose scatter-gather entries have lengths `lens` on an
/// interface of `mtu` bytes: `mlx5e_nvmeotcp_validate_sgl`.
///
/// - Lists short enough that even a packet of receive-buffer pages fits (`lens.len()` plus the
///   pages of one MTU at most `MAX_SKB_FRAGS`) are accepted without looking at the lengths.
/// - Otherwise two worst cases must fit. **Prefix**: a packet starting with the PDU's data
///   covers the first `MAX_SKB_FRAGS` entries; if they hold less than an MTU, the rest of the
///   packet needs pages of its own. **Suffix**: a packet starting one byte before the end of an
///   entry; with fewer than `MAX_SKB_FRAGS` entries, the entries after the first plus the pages
///   for what is left of the MTU must fit; with more, every run of `MAX_SKB_FRAGS - 1`
///   consecutive entries after the first must hold at least `mtu - 1` bytes.
pub fn validate_sgl(lens: &[u32], mtu: u32) -> bool {
    let max = MAX_SKB_FRAGS as usize;
    let mtu = u64::from(mtu);
    let pages = |bytes: u64| bytes.div_ceil(u64::from(PAGE_SIZE)) as usize;
    if lens.len() + pages(mtu) <= max {
        return true;
    }
    prefix_fits(lens, mtu, max, pages) && suffix_fits(lens, mtu, max, pages)
}

fn sum(lens: &[u32]) -> u64 {
    lens.iter().map(|&l| u64::from(l)).sum()
}

fn prefix_fits(lens: &[u32], mtu: u64, max: usize, pages: impl Fn(u64) -> usize) -> bool {
    let first = &lens[..lens.len().min(max)];
    let covered = sum(first);
    covered >= mtu || first.len() + pages(mtu - covered) <= max
}

fn suffix_fits(lens: &[u32], mtu: u64, max: usize, pages: impl Fn(u64) -> usize) -> bool {
    let Some(rest) = lens.get(1..) else {
        return true;
    };
    if lens.len() < max {
        // One byte of the first entry, every later entry, then pages for the rest.
        let covered = sum(rest);
        return covered >= mtu || lens.len() + pages(mtu - covered - 1) <= max;
    }
    // One byte of an entry, the next MAX_SKB_FRAGS - 1 entries, then one more fragment: those
    // entries must hold the rest of the packet.
    rest.windows(max - 1).all(|w| sum(w) + 1 >= mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lists_pass_whatever_their_lengths() {
        // 16 entries + 1 page for a 1500-byte MTU = 17.
        assert!(validate_sgl(&[1; 16], 1500));
        // 14 entries + 3 pages for a 9000-byte MTU = 17.
        assert!(validate_sgl(&[1; 14], 9000));
        assert!(validate_sgl(&[], 9000));
    }

    #[test]
    fn pages_pass_at_any_mtu() {
        for mtu in [576, 1500, 4096, 9000, 65_535] {
            assert!(validate_sgl(&[4096; 128], mtu), "mtu {mtu}");
        }
    }

    #[test]
    fn prefix_too_small() {
        // 17 entries of 64 bytes hold 1088 < 1500: the packet needs an 18th fragment.
        assert!(!validate_sgl(&[64; 17], 1500));
        // 17 × 512 = 8704 bytes: enough for 1500, not for 9000.
        assert!(validate_sgl(&[512; 17], 1500));
        assert!(!validate_sgl(&[512; 17], 9000));
        // 16 × 512 at 9000: prefix 8192 + 1 page = 17 fragments; suffix 15 entries + 1 page.
        assert!(validate_sgl(&[512; 16], 9000));
    }

    #[test]
    fn a_run_of_small_entries_in_the_middle() {
        let mut lens = vec![4096; 20];
        lens.extend([64; 16]);
        lens.extend([4096; 20]);
        // The prefix is large, but a packet starting in entry 19 spans the 16 small ones.
        assert!(prefix_fits(&lens, 1500, 17, |b| b.div_ceil(4096) as usize));
        assert!(!validate_sgl(&lens, 1500));
        // 15 small entries in a row leave room for one page of the next.
        let mut lens = vec![4096; 20];
        lens.extend([64; 15]);
        lens.extend([4096; 20]);
        assert!(validate_sgl(&lens, 1500));
    }

    #[test]
    fn small_suffix() {
        // 15 entries at 9000 (15 + 3 > 17): the first entry is large, the rest small.
        let mut lens = vec![65_536];
        lens.extend([128; 14]);
        // Prefix holds the MTU; suffix: 14 × 128 = 1792, the rest 7207 bytes = 2 pages,
        // 15 + 2 = 17 fits.
        assert!(validate_sgl(&lens, 9000));
        let mut lens = vec![65_536];
        lens.extend([128; 15]);
        // 16 entries: 16 + 2 = 18.
        assert!(!validate_sgl(&lens, 9000));
    }
}
