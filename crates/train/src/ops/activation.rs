//! The feed-forward gates: SwiGLU (llama: silu(gate) * up) and GeGLU with the tanh GELU
//! (Gemma 3: gelu(gate) * up). Inputs are kept; outputs are recomputed in the backward.

use super::fast_exp::exp;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Silu,
    GeluTanh,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// tanh through one (vectorizable) `exp`: libm's `tanhf` goes through `expm1f` and was a
/// tenth of a Gemma 3 step. Near 0 the quotient cancels, but its absolute error stays ~1e-7, and GELU and its
/// gradient only ever use `1 + t` and `1 - t^2`, where absolute error is what counts.
fn tanh(z: f32) -> f32 {
    let e = exp(2.0 * z.clamp(-9.0, 9.0));
    (e - 1.0) / (e + 1.0)
}

/// The activation and its derivative at `x`, sharing one exponential.
#[inline(always)]
fn act_and_grad(gate: Gate, x: f32) -> (f32, f32) {
    match gate {
        Gate::Silu => {
            let s = 1.0 / (1.0 + exp(-x));
            (x * s, s * (1.0 + x * (1.0 - s)))
        }
        Gate::GeluTanh => {
            let t = tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
            let y = 0.5 * x * (1.0 + t);
            (y, 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x))
        }
    }
}

/// The activation alone: once inlined, the unused derivative is dead code the compiler drops.
#[inline(always)]
fn act(gate: Gate, x: f32) -> f32 {
    act_and_grad(gate, x).0
}

/// Elements per parallel task: large enough that splitting costs nothing next to the work.
const PER_TASK: usize = 1 << 14;

/// `out = act(gate) * up`, element-wise.
pub fn forward(kind: Gate, gate: &[f32], up: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(PER_TASK).zip(gate.par_chunks(PER_TASK).zip(up.par_chunks(PER_TASK))).for_each(|(o, (g, u))| {
        o.iter_mut().zip(g.iter().zip(u)).for_each(|(o, (&g, &u))| *o = act(kind, g) * u);
    });
}

/// Overwrites `dgate` and `dup` with the gradients for `dout`.
pub fn backward(kind: Gate, gate: &[f32], up: &[f32], dout: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    let n = PER_TASK;
    dgate
        .par_chunks_mut(n)
        .zip(dup.par_chunks_mut(n))
        .zip(gate.par_chunks(n).zip(up.par_chunks(n)).zip(dout.par_chunks(n)))
        .for_each(|((dg, du), ((g, u), d))| {
            for ((dg, du), ((&g, &u), &d)) in dg.iter_mut().zip(du.iter_mut()).zip(g.iter().zip(u).zip(d)) {
                let (a, da) = act_and_grad(kind, g);
                *dg = d * u * da;
                *du = d * a;
            }
        });
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
    fn the_one_exp_tanh_is_within_float_rounding_of_libms() {
        let worst = (-40_000..=40_000)
            .map(|i| i as f32 * 5e-4)
            .chain([-1e4, 1e4, 1e-30, -1e-30])
            .map(|z| (tanh(z) - z.tanh()).abs())
            .fold(0.0, f32::max);
        assert!(worst < 3e-7, "worst absolute difference {worst}");
    }

    #[test]
    fn gelu_is_the_tanh_approximation() {
        // Reference values of 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).
        assert!((act(Gate::GeluTanh, 1.0) - 0.841_192).abs() < 1e-5);
        assert!((act(Gate::GeluTanh, -2.0) - -0.045_402_3).abs() < 1e-5);
    }
}
