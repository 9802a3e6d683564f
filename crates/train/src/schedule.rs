//! Learning-rate schedules with Hugging Face Trainer's formulas, so a run configured as in
//! `transformers` sees the same rates step by step (including rate 0 on the first warmup step).

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Linear,
    Cosine,
    /// Constant after the warmup (Hugging Face's `constant_with_warmup`; with no warmup,
    /// its `constant`).
    Constant,
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Kind::Linear),
            "cosine" => Ok(Kind::Cosine),
            "constant" | "constant_with_warmup" => Ok(Kind::Constant),
            other => Err(format!("`{other}` is not a schedule; expected linear, cosine or constant")),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub kind: Kind,
    pub peak: f32,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// The rate for the optimizer step that follows `done` completed steps.
    pub fn lr(&self, done: usize) -> f32 {
        let (w, t) = (self.warmup_steps, self.total_steps);
        if done < w {
            return self.peak * done as f32 / w.max(1) as f32;
        }
        let progress = (done - w) as f32 / t.saturating_sub(w).max(1) as f32;
        let factor = match self.kind {
            Kind::Constant => 1.0,
            Kind::Linear => (1.0 - progress).max(0.0),
            Kind::Cosine => (0.5 * (1.0 + (std::f32::consts::PI * progress).cos())).max(0.0),
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_transformers_formulas() {
        let s = |kind| Schedule { kind, peak: 1.0, warmup_steps: 2, total_steps: 10 };
        assert_eq!(s(Kind::Linear).lr(0), 0.0);
        assert_eq!(s(Kind::Linear).lr(1), 0.5);
        assert_eq!(s(Kind::Linear).lr(2), 1.0);
        assert!((s(Kind::Linear).lr(6) - 0.5).abs() < 1e-6);
        assert!((s(Kind::Cosine).lr(6) - 0.5).abs() < 1e-6);
        assert!(s(Kind::Cosine).lr(10).abs() < 1e-6);
        assert_eq!(s(Kind::Constant).lr(9), 1.0);
        assert!("warmup".parse::<Kind>().unwrap_err().contains("linear, cosine or constant"));
    }
}
