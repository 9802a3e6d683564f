//! Next-token cross-entropy through the output projection, in row chunks, so the logits of
//! a whole batch are never held at once (1,024 rows x 262k vocabulary would be 1 GiB).
//! Only rows with a label are projected at all: in SFT most rows are prompt.

use crate::gemm::{matmul, Op};
use rayon::prelude::*;

/// Marks a row that is not trained on (prompt tokens, the last token of a sequence).
pub const IGNORE: u32 = u32::MAX;

/// Caps one chunk's logits at about 16 MiB.
const CHUNK_VALUES: usize = 4 << 20;

/// `(scale, dh, dtable)`: what the backward adds into, and by how much.
pub type Grad<'a> = (f32, &'a mut [f32], Option<&'a mut [f32]>);

pub struct Output {
    /// Sum of -log p(label) over labelled rows.
    pub loss_sum: f64,
    pub rows: usize,
}

/// `h`: `[rows, d]` final hidden states; `table`: `[vocab, d]` output projection. When
/// `grad` is given as `(scale, dh, dtable)`, adds `scale * d(loss_sum)/dh` into `dh`, and
/// into `dtable` when the projection is trained.
pub fn forward_backward(h: &[f32], table: &[f32], d: usize, labels: &[u32], grad: Option<Grad<'_>>) -> Output {
    let vocab = table.len() / d;
    let rows: Vec<usize> = labels.iter().enumerate().filter(|(_, &l)| l != IGNORE).map(|(i, _)| i).collect();
    let chunk = (CHUNK_VALUES / vocab).clamp(1, 256);
    let mut loss_sum = 0.0f64;
    let mut grad = grad;
    let mut hc = Vec::with_capacity(chunk * d);
    let mut logits = vec![0.0f32; chunk * vocab];
    for part in rows.chunks(chunk) {
        let c = part.len();
        hc.clear();
        for &r in part {
            hc.extend_from_slice(&h[r * d..(r + 1) * d]);
        }
        let logits = &mut logits[..c * vocab];
        matmul(logits, false, &hc, Op::N, table, Op::T, (c, vocab, d), 1.0);
        let want_grad = grad.is_some();
        let scale = grad.as_ref().map_or(0.0, |g| g.0);
        loss_sum += logits
            .par_chunks_mut(vocab)
            .zip(part.par_iter())
            .map(|(row, &r)| {
                let label = labels[r] as usize;
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let target = row[label];
                // One f32 exp per logit, kept for the gradient; the sum is accumulated in f64.
                let mut sum = 0.0f64;
                for x in row.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x as f64;
                }
                let loss = max as f64 + sum.ln() - target as f64;
                if want_grad {
                    // d loss / d logit = softmax - onehot, scaled once here.
                    let k = (scale as f64 / sum) as f32;
                    row.iter_mut().for_each(|x| *x *= k);
                    row[label] -= scale;
                }
                loss
            })
            .sum::<f64>();
        if let Some((_, dh, dtable)) = grad.as_mut() {
            let mut dhc = vec![0.0f32; c * d];
            matmul(&mut dhc, false, logits, Op::N, table, Op::N, (c, d, vocab), 1.0);
            for (i, &r) in part.iter().enumerate() {
                dh[r * d..(r + 1) * d].iter_mut().zip(&dhc[i * d..(i + 1) * d]).for_each(|(o, g)| *o += g);
            }
            if let Some(dt) = dtable.as_deref_mut() {
                matmul(dt, true, logits, Op::T, &hc, Op::N, (vocab, d, c), 1.0);
            }
        }
    }
    Output { loss_sum, rows: rows.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};

    #[test]
    fn backward_matches_finite_differences_and_ignores_unlabelled_rows() {
        let (rows, d, vocab) = (4, 6, 11);
        let h = pseudo_random(rows * d, 13);
        let table = pseudo_random(vocab * d, 14);
        let labels = [3, IGNORE, 10, 0];
        let loss = |h: &[f32], t: &[f32]| forward_backward(h, t, d, &labels, None).loss_sum;
        let (mut dh, mut dt) = (vec![0.0; h.len()], vec![0.0; table.len()]);
        let out = forward_backward(&h, &table, d, &labels, Some((1.0, &mut dh, Some(&mut dt))));
        assert_eq!(out.rows, 3);
        assert!(dh[d..2 * d].iter().all(|&g| g == 0.0), "an ignored row got a gradient");
        check_gradient("cross-entropy dh", &h, &dh, |x| loss(x, &table));
        check_gradient("cross-entropy dtable", &table, &dt, |x| loss(&h, x));
    }

    #[test]
    fn uniform_logits_give_log_vocab() {
        let (d, vocab) = (3, 7);
        let out = forward_backward(&[0.0; 3], &vec![0.5; vocab * d], d, &[2], None);
        assert!((out.loss_sum - (vocab as f64).ln()).abs() < 1e-9);
    }
}
