//! Next-token selection: penalties, top-k, top-p, min-p, temperature, seeded sampling, and
//! log-probabilities of the chosen token and its best alternatives.
//!
//! The order follows llama.cpp's default chain (penalties, top-k, top-p, min-p, temperature)
//! so that settings carry over from it. Buffers are reused across steps: the hot path
//! allocates only when log-probabilities are requested.

use crate::error::{EngineError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1 disables nucleus sampling.
    pub top_p: f32,
    /// 0 disables min-p.
    pub min_p: f32,
    /// 1 disables; > 1 discourages tokens seen in the last `penalty_last_n` tokens.
    pub repetition_penalty: f32,
    /// OpenAI-style: subtract `frequency_penalty * count` from a seen token's logit.
    pub frequency_penalty: f32,
    /// OpenAI-style: subtract `presence_penalty` from any seen token's logit.
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at (0: all of the sequence).
    pub penalty_last_n: usize,
    /// Same seed and inputs, same output. `None` draws a seed from the OS.
    pub seed: Option<u64>,
    /// Report this many top alternatives per step (0: only the chosen token's logprob).
    pub top_logprobs: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
            top_logprobs: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Self::default() }
    }

    /// Rejects out-of-range values with an error naming the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: String| Err(EngineError::InvalidParameter { field, message });
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return bad("temperature", format!("must be in [0, 100], got {}", self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if !(self.min_p.is_finite() && (0.0..=1.0).contains(&self.min_p)) {
            return bad("min_p", format!("must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", format!("must be > 0, got {}", self.repetition_penalty));
        }
        for (field, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(v.is_finite() && (-2.0..=2.0).contains(&v)) {
                return bad(field, format!("must be in [-2, 2], got {v}"));
            }
        }
        if self.top_logprobs > 20 {
            return bad("top_logprobs", format!("must be in [0, 20], got {}", self.top_logprobs));
        }
        Ok(())
    }

    fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampledToken {
    pub id: u32,
    /// Log-probability of the chosen token under the model (before penalties and truncation).
    pub logprob: f32,
    /// The most likely tokens under the model, best first (empty unless requested).
    pub top: Vec<TokenLogprob>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    candidates: Vec<(u32, f32)>,
    counts: std::collections::HashMap<u32, u32>,
    /// Logits as they were before penalties, for the tokens the penalties changed.
    originals: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self { params, rng, candidates: Vec::new(), counts: Default::default(), originals: Vec::new() })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (modified in place by penalties). `history` is the
    /// sequence so far (prompt and generated), used by the penalties.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> SampledToken {
        let (max, log_z) = log_normalizer(logits);
        let top = if self.params.top_logprobs > 0 {
            top_n(logits, self.params.top_logprobs)
                .into_iter()
                .map(|(id, l)| TokenLogprob { id, logprob: l - max - log_z })
                .collect()
        } else {
            Vec::new()
        };
        self.apply_penalties(logits, history);
        let id = if self.params.is_greedy() { argmax(logits) } else { self.sample_distribution(logits) };
        // Report the model's own probability: undo the penalty for the chosen token.
        let original = self.originals.iter().find(|(t, _)| *t == id).map_or(logits[id as usize], |&(_, l)| l);
        SampledToken { id, logprob: original - max - log_z, top }
    }

    fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        self.originals.clear();
        if p.repetition_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0 {
            return;
        }
        let window = if p.penalty_last_n == 0 { history.len() } else { p.penalty_last_n.min(history.len()) };
        self.counts.clear();
        for &t in &history[history.len() - window..] {
            *self.counts.entry(t).or_insert(0) += 1;
        }
        for (&t, &count) in &self.counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            self.originals.push((t, *l));
            if p.repetition_penalty != 1.0 {
                *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
            }
            *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    fn sample_distribution(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        // Sort only as much as needed: top-k bounds the work, otherwise a full sort.
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // Probabilities at temperature 1 for the truncation filters, as llama.cpp does.
        let max = c[0].1;
        let mut probs: Vec<f32> = c.iter().map(|&(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, &pr) in probs.iter().enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
        }
        c.truncate(keep);
        // Temperature, then draw.
        let weights: Vec<f32> = c.iter().map(|&(_, l)| ((l - max) / p.temperature).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return c[i].0;
            }
            r -= w;
        }
        c[c.len() - 1].0
    }
}

/// (max, log(sum(exp(l - max)))) for a numerically stable log-softmax.
fn log_normalizer(logits: &[f32]) -> (f32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (max, sum.ln())
}

/// Index of the largest logit; the lowest index wins ties, as in llama.cpp.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if best.len() < n || l > best[best.len() - 1].1 {
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as u32, l));
            best.truncate(n);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_picks_argmax_and_reports_logprob() {
        let mut s = Sampler::new(SamplingParams { top_logprobs: 2, ..SamplingParams::greedy() }).unwrap();
        let out = s.sample(&mut logits(), &[]);
        assert_eq!(out.id, 1);
        let z: f32 = logits().iter().map(|l| l.exp()).sum();
        assert!((out.logprob - (3.0f32.exp() / z).ln()).abs() < 1e-5);
        assert_eq!(out.top.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 4]);
    }

    #[test]
    fn argmax_prefers_lowest_index_on_ties() {
        assert_eq!(argmax(&[0.0, 5.0, 5.0]), 1);
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice_but_not_reported_logprob() {
        let params = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        let mut s = Sampler::new(params).unwrap();
        let out = s.sample(&mut logits(), &[1]);
        assert_eq!(out.id, 4, "token 1 (3.0 -> 1.5) falls behind token 4 (2.9)");
        let z: f32 = logits().iter().map(|l| l.exp()).sum();
        assert!((out.logprob - (2.9f32.exp() / z).ln()).abs() < 1e-5);
    }

    #[test]
    fn frequency_and_presence_penalties_scale_with_count() {
        let params = SamplingParams { frequency_penalty: 0.5, presence_penalty: 0.2, ..SamplingParams::greedy() };
        let mut s = Sampler::new(params).unwrap();
        let mut l = logits();
        s.sample(&mut l, &[1, 1, 4]);
        assert!((l[1] - (3.0 - 1.0 - 0.2)).abs() < 1e-6);
        assert!((l[4] - (2.9 - 0.5 - 0.2)).abs() < 1e-6);
        assert_eq!(l[2], 2.0);
    }

    #[test]
    fn same_seed_same_tokens() {
        let params =
            SamplingParams { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: Some(7), ..Default::default() };
        let draw = |params: SamplingParams| {
            let mut s = Sampler::new(params).unwrap();
            (0..50).map(|_| s.sample(&mut logits(), &[]).id).collect::<Vec<_>>()
        };
        let a = draw(params.clone());
        assert_eq!(a, draw(params.clone()));
        assert_ne!(a, draw(SamplingParams { seed: Some(8), ..params }), "another seed should differ somewhere");
        assert!(
            a.iter().collect::<std::collections::HashSet<_>>().len() > 1,
            "high temperature samples several tokens"
        );
    }

    #[test]
    fn top_k_one_is_greedy() {
        let params = SamplingParams { temperature: 1.0, top_k: 1, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits(), &[]).id, 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probabilities ~ [0.04, 0.33, 0.12, 0.03, 0.30, ...]: top_p 0.5 keeps tokens 1 and 4.
        let params =
            SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.5, min_p: 0.0, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..100 {
            let id = s.sample(&mut logits(), &[]).id;
            assert!(id == 1 || id == 4, "token {id} should have been cut by top_p");
        }
        // min_p 0.5: tokens below half the best probability go (keeps 1 and 4 again).
        let params =
            SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, seed: Some(3), ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..100 {
            let id = s.sample(&mut logits(), &[]).id;
            assert!(id == 1 || id == 4, "token {id} should have been cut by min_p");
        }
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (SamplingParams { top_p: 0.0, ..Default::default() }, "top_p"),
            (SamplingParams { temperature: -1.0, ..Default::default() }, "temperature"),
            (SamplingParams { min_p: 2.0, ..Default::default() }, "min_p"),
            (SamplingParams { presence_penalty: 3.0, ..Default::default() }, "presence_penalty"),
            (SamplingParams { top_logprobs: 50, ..Default::default() }, "top_logprobs"),
        ];
        for (params, field) in cases {
            let err = Sampler::new(params).err().expect("must be rejected").to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
