//! RFC 1982 serial number arithmetic on 32-bit sequence numbers (CmdSN, StatSN, DataSN).

/// Whether `a` is serially less than `b` (`(b - a) mod 2^32` in `1..2^31`).
///
/// ```
/// use ulp_iscsi::serial::lt;
/// assert!(lt(u32::MAX, 0));
/// assert!(!lt(0, u32::MAX));
/// assert!(!lt(5, 5));
/// ```
pub fn lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000_0000
}

/// Whether `a` is serially greater than `b`.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// Whether `a` is serially less than or equal to `b`.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn wrap() {
        assert!(lt(0xFFFF_FFF0, 3));
        assert!(gt(3, 0xFFFF_FFF0));
        assert!(le(7, 7));
        assert!(!lt(0, 0x8000_0000));
        assert!(!gt(0, 0x8000_0000));
    }

    proptest! {
        #[test]
        fn antisymmetric(a in any::<u32>(), d in 1u32..0x7FFF_FFFF) {
            let b = a.wrapping_add(d);
            prop_assert!(lt(a, b));
            prop_assert!(!lt(b, a));
            prop_assert!(gt(b, a));
        }
    }
}
