//! Summary statistics for the benchmarks' printed tables.

/// Median and 95th percentile (nearest rank) of `samples`; NaN for no samples.
///
/// ```
/// let (median, p95) = edgelb_tests::bench_stats::stats(&[3.0, 1.0, 2.0, 10.0]);
/// assert_eq!((median, p95), (2.5, 10.0));
/// ```
pub fn stats(samples: &[f64]) -> (f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    (median, v[rank.clamp(1, v.len()) - 1])
}
