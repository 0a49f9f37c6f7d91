//! Histogram bucket bounds for latencies: the default, and SLA thresholds as edges.
//!
//! Two things decide the buckets:
//! - **Resolution.** Prometheus interpolates a quantile linearly inside a bucket, so its
//!   error grows with the ratio between neighbouring edges. The default is the R10 series
//!   (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8 per decade, ratio ≤ 1.28) from 4 ms to 10 s,
//!   which keeps an interpolated p95 within 10 % of the HDR histogram's for the latency
//!   shapes in the test below (log-normal with σ from 0.25 to 1, and a fixed cost with an
//!   exponential tail) wherever the p95 lies between 5 ms and 10 s. Above 10 s it is coarser
//!   (AI endpoints can take minutes).
//! - **Exact SLA answers.** Every latency threshold of the config is inserted as an edge
//!   ([`with_edges`]; `RawConfig::latency_buckets` lists them), so the bucket at that edge
//!   counts exactly the responses within the SLA and the SLA alert reads a fraction, not an
//!   interpolated quantile.

/// `metrics.buckets` by default, in seconds.
pub const DEFAULT: &[f64] = &[
    0.001, 0.0025, 0.004, 0.005, 0.0063, 0.008, 0.01, 0.0125, 0.016, 0.02, 0.025, 0.0315, 0.04,
    0.05, 0.063, 0.08, 0.1, 0.125, 0.16, 0.2, 0.25, 0.315, 0.4, 0.5, 0.63, 0.8, 1.0, 1.25, 1.6,
    2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0, 10.0, 12.5, 16.0, 20.0, 30.0, 60.0, 120.0,
];

/// A duration in seconds as the config spells it: `1805ms` is 1.805, where
/// `Duration::as_secs_f64` gives 1.8050000000000002 (1 + 0.805 rounded twice), which would
/// be a bucket edge `le="1.8050000000000002"`.
pub fn secs(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

/// `buckets` (ascending) with every positive finite `edges` value inserted once.
pub fn with_edges(buckets: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut all: Vec<f64> = buckets
        .iter()
        .chain(edges)
        .copied()
        .filter(|b| b.is_finite() && *b > 0.0)
        .collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::exposition::family::{Buckets, Histogram, Metric};

    #[test]
    fn edges_are_inserted_once_in_order() {
        assert_eq!(
            with_edges(&[0.5, 1.0, 2.5], &[1.805, 0.3, 2.5, f64::NAN, 0.0]),
            vec![0.3, 0.5, 1.0, 1.805, 2.5]
        );
        assert_eq!(secs(Duration::from_millis(1805)), 1.805);
        // The default's 2 s (the default SLA) is already an edge.
        assert_eq!(with_edges(DEFAULT, &[2.0]), DEFAULT);
    }

    /// Prometheus' `histogram_quantile`: find the bucket holding rank q·count and interpolate
    /// linearly inside it (from 0 in the first bucket; the highest finite edge in `+Inf`).
    fn histogram_quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> f64 {
        let total = *cumulative.last().unwrap() as f64;
        let rank = q * total;
        let i = cumulative.partition_point(|c| (*c as f64) < rank);
        if i >= bounds.len() {
            return *bounds.last().unwrap();
        }
        let (lo, below) = if i == 0 {
            (0.0, 0.0)
        } else {
            (bounds[i - 1], cumulative[i - 1] as f64)
        };
        lo + (bounds[i] - lo) * (rank - below) / (cumulative[i] as f64 - below)
    }

    /// Cumulative bucket counts as `/metrics` would expose them (the `+Inf` bucket last).
    fn cumulative(h: &Histogram, cfg: &Buckets) -> Vec<u64> {
        let mut text = Vec::new();
        h.encode(cfg, "h", "", &mut text);
        String::from_utf8(text)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("h_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    /// One latency drawn from a shape whose p95 is near `p95` seconds.
    fn draw(shape: &str, p95: f64, rng: &mut rand::rngs::StdRng) -> f64 {
        let mut normal = || {
            // Box-Muller; 1 - u keeps the logarithm finite.
            let (u, v): (f64, f64) = (rng.gen(), rng.gen());
            (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        match shape {
            "lognormal σ=0.25" | "lognormal σ=0.5" | "lognormal σ=1" => {
                let s: f64 = shape.rsplit('=').next().unwrap().parse().unwrap();
                (p95.ln() - 1.645 * s + s * normal()).exp()
            }
            // A fixed cost of 70 % of the p95 and an exponential tail (queueing).
            "fixed + exponential" => {
                let mean_tail = 0.3 * p95 / 3.0;
                let u: f64 = rng.gen();
                0.7 * p95 - mean_tail * (1.0 - u).ln()
            }
            _ => unreachable!(),
        }
    }

    /// The resolution claim of the module doc, measured: for every shape and 40 p95 targets
    /// spread log-uniformly over 5 ms..10 s, the interpolated p95 of the default buckets is
    /// within 10 % of the HDR p95 (loadspec's reports use HDR with 3 significant digits).
    #[test]
    fn default_buckets_interpolate_p95_within_10_percent_of_hdr() {
        let bounds = DEFAULT.to_vec();
        let cfg = Buckets::new(&bounds);
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut worst = (0.0f64, String::new());
        for shape in [
            "lognormal σ=0.25",
            "lognormal σ=0.5",
            "lognormal σ=1",
            "fixed + exponential",
        ] {
            for k in 0..40 {
                let target = 0.005 * (2000f64).powf(k as f64 / 39.0);
                let h = Histogram::create(&cfg);
                let mut hdr =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
                for _ in 0..5000 {
                    let x = draw(shape, target, &mut rng);
                    h.observe(x);
                    hdr.saturating_record(((x * 1e6) as u64).max(1));
                }
                let exact = hdr.value_at_quantile(0.95) as f64 / 1e6;
                let interpolated = histogram_quantile(0.95, &bounds, &cumulative(&h, &cfg));
                let err = (interpolated / exact - 1.0).abs();
                if err > worst.0 {
                    worst = (
                        err,
                        format!("{shape}, HDR p95 {exact} s, interpolated {interpolated} s"),
                    );
                }
            }
        }
        eprintln!("worst: {:.1} % off: {}", worst.0 * 100.0, worst.1);
        assert!(worst.0 < 0.10, "{:.1} % off: {}", worst.0 * 100.0, worst.1);
        // The old default (…0.5, 1, 2.5…) is what the issue measured: far outside.
        let old = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
        ];
        let cfg = Buckets::new(&old);
        let h = Histogram::create(&cfg);
        for _ in 0..5000 {
            h.observe(draw("fixed + exponential", 1.805, &mut rng));
        }
        let p95 = histogram_quantile(0.95, &old, &cumulative(&h, &cfg));
        assert!(p95 > 2.2, "old buckets read {p95} for a 1.805 s p95");
    }
}
