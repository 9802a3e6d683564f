//! A level's outcomes -> its summary: counts, throughput, latency percentiles, errors by type.

use super::client::{Failure, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The p-th percentile (0..=100) of ascending `sorted`, by linear interpolation between the
/// closest ranks (numpy's default, which vLLM's benchmark_serving uses, so figures compare):
/// rank h = (n - 1) * p / 100, value x[⌊h⌋] + (h - ⌊h⌋) * (x[⌊h⌋ + 1] - x[⌊h⌋]).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * p.clamp(0.0, 100.0) / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Mean and percentiles of one measure, in milliseconds; all null when nothing was measured.
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct Distribution {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Distribution {
    pub fn of_durations(values: impl IntoIterator<Item = Duration>) -> Self {
        let mut ms: Vec<f64> = values.into_iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let mean = (!ms.is_empty()).then(|| ms.iter().sum::<f64>() / ms.len() as f64);
        Distribution { mean, p50: percentile(&ms, 50.0), p90: percentile(&ms, 90.0), p99: percentile(&ms, 99.0) }
    }
}

/// How a level loads the server.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    Concurrency(usize),
    Rate { rate: f64, max_concurrency: Option<usize> },
}

impl Load {
    pub fn label(&self) -> String {
        match self {
            Load::Concurrency(n) => format!("c={n}"),
            Load::Rate { rate, max_concurrency: None } => format!("{rate} req/s"),
            Load::Rate { rate, max_concurrency: Some(m) } => format!("{rate} req/s, max {m}"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LevelReport {
    pub level: String,
    pub concurrency: Option<usize>,
    pub request_rate: Option<f64>,
    pub max_concurrency: Option<usize>,
    /// Requests sent (ok + errors).
    pub requests: usize,
    pub ok: usize,
    pub errors: usize,
    /// Wall time of the level: first send to the end of the last reply.
    pub duration_s: f64,
    /// Successful requests per second of wall time.
    pub requests_per_s: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    /// Some replies had no usage, so their tokens are counted as text chunks.
    pub output_tokens_estimated: bool,
    pub mean_output_tokens: Option<f64>,
    pub mean_prompt_tokens: Option<f64>,
    pub e2e_ms: Distribution,
    pub ttft_ms: Distribution,
    /// Inter-token latency, pooled over all requests' gaps.
    pub itl_ms: Distribution,
    pub errors_by_type: BTreeMap<String, usize>,
    /// The first message seen of each error type, to tell a 400's cause without a debugger.
    pub error_examples: BTreeMap<String, String>,
}

pub fn summarize(load: Load, outcomes: &[Outcome], wall: Duration) -> LevelReport {
    let samples: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let failures: Vec<&Failure> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let mut errors_by_type = BTreeMap::new();
    let mut error_examples = BTreeMap::new();
    for f in &failures {
        *errors_by_type.entry(f.kind()).or_insert(0) += 1;
        error_examples.entry(f.kind()).or_insert_with(|| f.message());
    }
    let secs = wall.as_secs_f64();
    let per_s = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    let output_tokens: u64 = samples.iter().map(|s| s.completion_tokens).sum();
    let mean = |xs: Vec<u64>| (!xs.is_empty()).then(|| xs.iter().sum::<u64>() as f64 / xs.len() as f64);
    let (concurrency, request_rate, max_concurrency) = match load {
        Load::Concurrency(n) => (Some(n), None, None),
        Load::Rate { rate, max_concurrency } => (None, Some(rate), max_concurrency),
    };
    LevelReport {
        level: load.label(),
        concurrency,
        request_rate,
        max_concurrency,
        requests: outcomes.len(),
        ok: samples.len(),
        errors: failures.len(),
        duration_s: secs,
        requests_per_s: per_s(samples.len() as f64),
        output_tokens,
        output_tokens_per_s: per_s(output_tokens as f64),
        output_tokens_estimated: samples.iter().any(|s| s.estimated),
        mean_output_tokens: mean(samples.iter().map(|s| s.completion_tokens).collect()),
        mean_prompt_tokens: mean(samples.iter().filter_map(|s| s.prompt_tokens).collect()),
        e2e_ms: Distribution::of_durations(samples.iter().map(|s| s.e2e)),
        ttft_ms: Distribution::of_durations(samples.iter().filter_map(|s| s.ttft)),
        itl_ms: Distribution::of_durations(samples.iter().flat_map(|s| s.itl.iter().copied())),
        errors_by_type,
        error_examples,
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::Sample;
    use super::*;

    #[test]
    fn percentile_interpolates_linearly() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&four, 0.0), Some(1.0));
        assert_eq!(percentile(&four, 50.0), Some(2.5));
        assert_eq!(percentile(&four, 100.0), Some(4.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        // numpy.percentile(range(1, 11), [90, 99]) == [9.1, 9.91]
        assert!((percentile(&ten, 90.0).unwrap() - 9.1).abs() < 1e-12);
        assert!((percentile(&ten, 99.0).unwrap() - 9.91).abs() < 1e-12);
        // Out-of-range p is clamped rather than indexing past the end.
        assert_eq!(percentile(&four, 150.0), Some(4.0));
    }

    #[test]
    fn summary_counts_tokens_and_errors() {
        let ms = Duration::from_millis;
        let ok = |tokens, estimated| {
            Ok(Sample {
                ttft: Some(ms(10)),
                e2e: ms(100),
                itl: vec![ms(5), ms(7)],
                completion_tokens: tokens,
                prompt_tokens: Some(20),
                estimated,
            })
        };
        let outcomes = vec![
            ok(4, false),
            ok(6, false),
            Err(Failure::Status(429, "slow down".into())),
            Err(Failure::Status(429, "again".into())),
            Err(Failure::Timeout),
        ];
        let r = summarize(Load::Concurrency(2), &outcomes, Duration::from_secs(2));
        assert_eq!((r.requests, r.ok, r.errors), (5, 2, 3));
        assert_eq!(r.output_tokens, 10);
        assert_eq!(r.output_tokens_per_s, 5.0);
        assert_eq!(r.requests_per_s, 1.0);
        assert_eq!(r.mean_output_tokens, Some(5.0));
        assert!(!r.output_tokens_estimated);
        assert_eq!(r.errors_by_type.get("429"), Some(&2));
        assert_eq!(r.errors_by_type.get("timeout"), Some(&1));
        assert_eq!(r.error_examples["429"], "HTTP 429: slow down");
        assert_eq!(r.itl_ms.p50, Some(6.0));
        assert_eq!(r.level, "c=2");
    }

    #[test]
    fn all_failed_level_has_no_latencies() {
        let r = summarize(Load::Concurrency(1), &[Err(Failure::Connect("refused".into()))], Duration::ZERO);
        assert_eq!(r.e2e_ms, Distribution::default());
        assert_eq!((r.requests_per_s, r.mean_output_tokens), (0.0, None));
    }
}
