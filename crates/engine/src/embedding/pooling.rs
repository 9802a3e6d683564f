//! Sentence vectors from token states, as sentence-transformers' `Pooling` (mean tokens)
//! and `Normalize` modules compute them.

use crate::error::Result;
use candle_core::{Tensor, D};

/// The mean of each sequence's token states over its real tokens: `hidden` `(batch, seq,
/// dim)` and `mask` `(batch, seq)` (1 token, 0 padding) give `(batch, dim)`.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
    // sentence-transformers clamps the count at 1e-9; a sequence always has [CLS] and [SEP],
    // so the clamp only guards against a caller passing an all-padding row.
    let count = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(sum.broadcast_div(&count)?)
}

/// Each row divided by its Euclidean norm (torch's `F.normalize`, which keeps the norm at
/// least 1e-12 so a zero row stays zero rather than NaN).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_ignores_padding() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.]], &Device::Cpu).unwrap();
        assert_eq!(mean_pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap(), vec![vec![2., 3.]]);
    }

    #[test]
    fn normalizes_rows_and_keeps_zero_rows() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        assert_eq!(l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.6, 0.8], vec![0., 0.]]);
    }
}
