//! AdamW as PyTorch computes it (decoupled weight decay applied before the Adam update,
//! bias-corrected moments), and clipping by the global gradient norm.

use crate::model::Model;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// First and second moments of every trained tensor, in the model's visiting order.
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    pub moments: Vec<(String, Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, model: &mut Model) -> Self {
        let mut moments = Vec::new();
        model.visit_params(|name, p, _| moments.push((name.to_string(), vec![0.0; p.len()], vec![0.0; p.len()])));
        Self { config, step: 0, moments }
    }

    pub fn update(&mut self, model: &mut Model, lr: f32) {
        self.step += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let mut i = 0;
        let moments = &mut self.moments;
        model.visit_params(|name, p, g| {
            let (n, m, v) = &mut moments[i];
            debug_assert_eq!(n, name, "parameter order changed between steps");
            i += 1;
            p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut().zip(v.par_iter_mut())).for_each(
                |((p, &g), (m, v))| {
                    *p *= 1.0 - lr * c.weight_decay;
                    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                    *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + c.eps);
                },
            );
        });
    }
}

/// Scales the gradients so their global L2 norm is at most `max_norm` (when positive) and
/// returns the norm before clipping, as `torch.nn.utils.clip_grad_norm_` does.
pub fn clip_grad_norm(model: &mut Model, max_norm: f32) -> f32 {
    let mut sq = 0.0f64;
    model.visit_params(|_, _, g| sq += g.par_iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>());
    let norm = sq.sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        model.visit_params(|_, _, g| g.par_iter_mut().for_each(|x| *x *= s));
    }
    norm
}
