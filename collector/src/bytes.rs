//! Byte arithmetic that cannot wrap. A container controls the sizes of its files (a sparse file claims up
//! to 2^63-1 bytes) and a store's owner the sizes in its metadata, so sums of them are taken saturating
//! at [`BYTES_CAP`]: the largest figure a signed 64-bit field holds, which is how Docker's API and most
//! consumers of the JSON read these numbers. A figure at the cap is reported with a `size_capped` finding.

/// The largest byte count ovlaudit reports: `i64::MAX`.
pub const BYTES_CAP: u64 = i64::MAX as u64;

/// `a + b`, held at [`BYTES_CAP`].
pub fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(BYTES_CAP)
}

/// The sum of `values`, held at [`BYTES_CAP`].
pub fn sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, add)
}

/// Whether a figure reached the cap, so that the true value may be larger.
pub fn is_capped(n: u64) -> bool {
    n >= BYTES_CAP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_hold_at_the_cap_instead_of_wrapping() {
        // Three files of 2^63-1, 2^63-1-2^20+2 and 2^20 bytes: a u64 sum wraps to 0.
        let sizes = [BYTES_CAP, BYTES_CAP - (1 << 20) + 2, 1 << 20];
        assert_eq!(sizes.iter().fold(0u64, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(sum(sizes), BYTES_CAP);
        assert!(is_capped(sum(sizes)));
        assert_eq!(sum([1, 2, 3]), 6);
        assert!(!is_capped(sum([1, 2, 3])));
        assert_eq!(add(u64::MAX, u64::MAX), BYTES_CAP);
    }
}
