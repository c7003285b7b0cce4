//! Sizes for people: binary units with one decimal, as `du -h` and `ls -lh` print them.

/// `1536` → `1.5 KiB`; below 1 KiB the exact count with `B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn units_step_at_1024() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(10_585_766), "10.1 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
