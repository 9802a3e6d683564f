//! Open-loop arrivals: a Poisson process, i.e. independent exponential gaps between requests,
//! drawn from a seeded generator so a run can be repeated exactly.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Send times, relative to the start of the level, of `n` requests at `rate` requests/s on
/// average. The first request goes at once, as in vLLM's benchmark_serving.
pub fn poisson_arrivals(rate: f64, n: usize, seed: u64) -> Vec<Duration> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0_f64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Duration::from_secs_f64(t));
        // Inverse CDF of the exponential distribution; 1 - u lies in (0, 1], so ln is finite.
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / rate;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_deterministic() {
        let a = poisson_arrivals(4.0, 100, 7);
        assert_eq!(a, poisson_arrivals(4.0, 100, 7));
        assert_ne!(a, poisson_arrivals(4.0, 100, 8));
        assert_eq!(a[0], Duration::ZERO);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(poisson_arrivals(1.0, 0, 0).is_empty());
    }

    #[test]
    fn mean_gap_is_one_over_rate() {
        // 20 000 gaps: the sample mean's standard error is 1/rate/sqrt(20 000) ≈ 0.7 %, so 5 % is loose.
        let rate = 8.0;
        let n = 20_001;
        let a = poisson_arrivals(rate, n, 42);
        let mean = a[n - 1].as_secs_f64() / (n - 1) as f64;
        assert!((mean * rate - 1.0).abs() < 0.05, "mean gap {mean}");
        // Exponential gaps: about 1/e of them exceed the mean (not evenly spaced arrivals).
        let over = a.windows(2).filter(|w| (w[1] - w[0]).as_secs_f64() > 1.0 / rate).count();
        let frac = over as f64 / (n - 1) as f64;
        assert!((frac - (-1.0f64).exp()).abs() < 0.03, "fraction above mean {frac}");
    }
}
