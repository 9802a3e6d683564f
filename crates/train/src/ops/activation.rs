//! The feed-forward gates: SwiGLU (llama: silu(gate) * up) and GeGLU with the tanh GELU
//! (Gemma 3: gelu(gate) * up). Inputs are kept; outputs are recomputed in the backward.

use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Silu,
    GeluTanh,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

fn act(gate: Gate, x: f32) -> f32 {
    match gate {
        Gate::Silu => x / (1.0 + (-x).exp()),
        Gate::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh()),
    }
}

fn act_grad(gate: Gate, x: f32) -> f32 {
    match gate {
        Gate::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
        Gate::GeluTanh => {
            let t = (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
        }
    }
}

/// `out = act(gate) * up`, element-wise.
pub fn forward(kind: Gate, gate: &[f32], up: &[f32], out: &mut [f32]) {
    out.par_iter_mut().zip(gate.par_iter().zip(up.par_iter())).for_each(|(o, (&g, &u))| *o = act(kind, g) * u);
}

/// Overwrites `dgate` and `dup` with the gradients for `dout`.
pub fn backward(kind: Gate, gate: &[f32], up: &[f32], dout: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    dgate.par_iter_mut().zip(dup.par_iter_mut()).zip(gate.par_iter().zip(up.par_iter()).zip(dout.par_iter())).for_each(
        |((dg, du), ((&g, &u), &d))| {
            *dg = d * u * act_grad(kind, g);
            *du = d * act(kind, g);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};

    #[test]
    fn backward_matches_finite_differences() {
        for kind in [Gate::Silu, Gate::GeluTanh] {
            let g: Vec<f32> = pseudo_random(12, 10).iter().map(|x| x * 3.0).collect();
            let u = pseudo_random(12, 11);
            let dy = pseudo_random(12, 12);
            let loss = |g: &[f32], u: &[f32]| {
                let mut o = vec![0.0; 12];
                forward(kind, g, u, &mut o);
                o.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
            };
            let (mut dg, mut du) = (vec![0.0; 12], vec![0.0; 12]);
            backward(kind, &g, &u, &dy, &mut dg, &mut du);
            check_gradient("gate dgate", &g, &dg, |x| loss(x, &u));
            check_gradient("gate dup", &u, &du, |x| loss(&g, x));
        }
    }

    #[test]
    fn gelu_is_the_tanh_approximation() {
        // Reference values of 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).
        assert!((act(Gate::GeluTanh, 1.0) - 0.841_192).abs() < 1e-5);
        assert!((act(Gate::GeluTanh, -2.0) - -0.045_402_3).abs() < 1e-5);
    }
}
