//! Which byte ranges to request: neighbouring ranges are merged when the gap between them costs
//! less to download than another request costs in latency (C14: a cost model for high-RTT,
//! metered links). Pure functions.

use std::ops::Range;

/// Merges sorted, disjoint `ranges` whose gaps are at most `max_gap` bytes. The gaps are
/// downloaded and discarded: worth it while `max_gap` ≤ round-trip time × bandwidth.
pub fn coalesce(ranges: &[Range<u64>], max_gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges.iter().filter(|r| r.start < r.end) {
        match out.last_mut() {
            Some(last) if r.start >= last.end && r.start - last.end <= max_gap => {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

/// The gap worth bridging on a link with this round-trip time and bandwidth (bytes/s).
pub fn gap_for_link(rtt_ms: u64, bytes_per_second: u64) -> u64 {
    rtt_ms.saturating_mul(bytes_per_second) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_only_cheap_gaps() {
        let ranges = [0..100, 150..200, 10_000..10_100, 10_100..10_200];
        assert_eq!(coalesce(&ranges, 0), vec![0..100, 150..200, 10_000..10_200]);
        assert_eq!(coalesce(&ranges, 50), vec![0..200, 10_000..10_200]);
        assert_eq!(coalesce(&ranges, 1 << 20), vec![0..10_200]);
        assert_eq!(gap_for_link(600, 40_000), 24_000);
        assert!(coalesce(&[], 10).is_empty());
    }
}
