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
    (median, nearest_rank(&v, 0.95))
}

/// The `q` quantile (0 < q ≤ 1, nearest rank) of `samples`; NaN for no samples.
///
/// ```
/// let p90 = edgelb_tests::bench_stats::quantile(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.9);
/// assert_eq!(p90, 5.0);
/// ```
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    nearest_rank(&v, q)
}

/// The `q` quantile of the sorted `v` by nearest rank; NaN when empty.
fn nearest_rank(v: &[f64], q: f64) -> f64 {
    let rank = ((v.len() as f64) * q).ceil() as usize;
    v.get(rank.clamp(1, v.len().max(1)) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}
