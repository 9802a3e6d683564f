//! Rotary position embedding, through the engine's own `Rope` so that training rotates
//! exactly as serving does (including the pair layout of llama GGUFs' permuted q/k rows).
//! The backward of a rotation is the rotation by the opposite angle.

use luodi_engine::model::layers::Rope;
use rayon::prelude::*;

/// Rotates every `width`-wide row (heads of `head_dim`) of `data` in place at its position;
/// `inverse` rotates back, which is the gradient's path.
pub fn rotate(rope: &Rope, data: &mut [f32], width: usize, head_dim: usize, positions: &[usize], inverse: bool) {
    data.par_chunks_mut(width).zip(positions.par_iter()).for_each_init(Vec::new, |table, (row, &pos)| {
        rope.tables(pos, table);
        if inverse {
            let half = table.len() / 2;
            table[half..].iter_mut().for_each(|s| *s = -*s);
        }
        rope.rotate(row, head_dim, table);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};
    use luodi_engine::model::layers::RopeStyle;

    #[test]
    fn backward_matches_finite_differences_in_both_layouts() {
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            let rope = Rope::new(8, 10_000.0, style);
            let (width, positions) = (16, [0usize, 3, 17]);
            let x = pseudo_random(width * positions.len(), 4);
            let dy = pseudo_random(x.len(), 5);
            let loss = |x: &[f32]| {
                let mut y = x.to_vec();
                rotate(&rope, &mut y, width, 8, &positions, false);
                y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
            };
            let mut dx = dy.clone();
            rotate(&rope, &mut dx, width, 8, &positions, true);
            check_gradient("rope dx", &x, &dx, loss);
        }
    }
}
