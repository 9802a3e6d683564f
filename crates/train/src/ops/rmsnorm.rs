//! RMSNorm over rows: `y = x / rms(x) * w`, with rms(x) = sqrt(mean(x^2) + eps).
//!
//! Forward keeps each row's reciprocal rms, so the backward needs only the input and that.

use rayon::prelude::*;

/// Normalizes every `width`-wide row of `x` into `y`, writing 1/rms per row into `rstd`.
pub fn forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let width = w.len();
    y.par_chunks_mut(width).zip(x.par_chunks(width)).zip(rstd.par_iter_mut()).for_each(|((yr, xr), r)| {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / width as f32;
        *r = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = v * *r * g;
        }
    });
}

/// Adds the gradient with respect to `x` into `dx`; adds the weight's gradient into `dw`
/// when it is trained. With x̂ = x·r and g = dy·w: dx = r·(g − x̂·mean(g·x̂)), dw = Σ dy·x̂.
pub fn backward(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw: Option<&mut [f32]>) {
    let width = w.len();
    dx.par_chunks_mut(width).zip(x.par_chunks(width)).zip(dy.par_chunks(width)).zip(rstd.par_iter()).for_each(
        |(((dxr, xr), dyr), &r)| {
            let dot = xr.iter().zip(dyr).zip(w).map(|((&v, &d), &g)| d * g * v * r).sum::<f32>() / width as f32;
            for (((o, &v), &d), &g) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
                *o += r * (d * g - v * r * dot);
            }
        },
    );
    if let Some(dw) = dw {
        for ((xr, dyr), &r) in x.chunks(width).zip(dy.chunks(width)).zip(rstd) {
            for ((o, &v), &d) in dw.iter_mut().zip(xr).zip(dyr) {
                *o += d * v * r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};

    #[test]
    fn backward_matches_finite_differences() {
        let (rows, width, eps) = (3, 8, 1e-5);
        let x = pseudo_random(rows * width, 1);
        let w = pseudo_random(width, 2);
        let dy = pseudo_random(rows * width, 3);
        let loss = |x: &[f32], w: &[f32]| {
            let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; rows]);
            forward(x, w, eps, &mut y, &mut r);
            y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; rows]);
        forward(&x, &w, eps, &mut y, &mut r);
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; width]);
        backward(&x, &w, &r, &dy, &mut dx, Some(&mut dw));
        check_gradient("rmsnorm dx", &x, &dx, |v| loss(v, &w));
        check_gradient("rmsnorm dw", &w, &dw, |v| loss(&x, v));
    }
}
