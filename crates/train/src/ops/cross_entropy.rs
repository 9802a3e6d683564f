//! Next-token cross-entropy through the output projection, in row chunks, so the logits of
//! a whole batch are never held at once (1,024 rows x 262k vocabulary would be 1 GiB).
//! Only rows with a label are projected at all: in SFT most rows are prompt.

use super::fast_exp::exp;
use crate::gemm::{matmul, Op};
use rayon::prelude::*;

/// Marks a row that is not trained on (prompt tokens, the last token of a sequence).
pub const IGNORE: u32 = u32::MAX;

/// Caps one chunk's logits at about 64 MiB: 64 rows of Gemma 3's 262k vocabulary, so the
/// GEMM's row tiles are full.
const CHUNK_VALUES: usize = 16 << 20;

/// Vocabulary entries per parallel task in the softmax passes (each a slice of `c` rows).
const VOCAB_SLICE: usize = 2048;

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
    // The logits are held vocabulary-major, `[vocab, c]`: computed as `table x hc^T`, the
    // GEMM reads the table where it lies. Row-major `[c, vocab]` logits would make it repack
    // the whole table (262k x d for Gemma 3) for every chunk: profiled at ~30% of a step.
    let mut logits_t = vec![0.0f32; chunk * vocab];
    for part in rows.chunks(chunk) {
        let c = part.len();
        hc.clear();
        for &r in part {
            hc.extend_from_slice(&h[r * d..(r + 1) * d]);
        }
        let lt = &mut logits_t[..c * vocab];
        matmul(lt, false, table, Op::N, &hc, Op::T, (vocab, c, d), 1.0);
        let slice = VOCAB_SLICE * c;
        let max = lt
            .par_chunks(slice)
            .map(|s| {
                let mut m = vec![f32::NEG_INFINITY; c];
                for v in s.chunks_exact(c) {
                    m.iter_mut().zip(v).for_each(|(m, &x)| *m = m.max(x));
                }
                m
            })
            .reduce(
                || vec![f32::NEG_INFINITY; c],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, &b)| *a = a.max(b));
                    a
                },
            );
        let target: Vec<f32> = part.iter().enumerate().map(|(i, &r)| lt[labels[r] as usize * c + i]).collect();
        // One f32 exp per logit, kept for the gradient; the sums are accumulated in f64.
        let sum = lt
            .par_chunks_mut(slice)
            .map(|s| {
                let mut acc = vec![0.0f64; c];
                for v in s.chunks_exact_mut(c) {
                    for ((x, &m), a) in v.iter_mut().zip(&max).zip(acc.iter_mut()) {
                        *x = exp(*x - m);
                        *a += *x as f64;
                    }
                }
                acc
            })
            .reduce(
                || vec![0.0f64; c],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
                    a
                },
            );
        loss_sum += (0..c).map(|i| max[i] as f64 + sum[i].ln() - target[i] as f64).sum::<f64>();
        if let Some((scale, dh, dtable)) = grad.as_mut() {
            // d loss / d logit = softmax - onehot, scaled once here.
            let scale = *scale;
            let k: Vec<f32> = sum.iter().map(|&s| (scale as f64 / s) as f32).collect();
            lt.par_chunks_mut(slice).for_each(|s| {
                for v in s.chunks_exact_mut(c) {
                    v.iter_mut().zip(&k).for_each(|(x, &k)| *x *= k);
                }
            });
            for (i, &r) in part.iter().enumerate() {
                lt[labels[r] as usize * c + i] -= scale;
            }
            let mut dhc = vec![0.0f32; c * d];
            matmul(&mut dhc, false, lt, Op::T, table, Op::N, (c, d, vocab), 1.0);
            for (i, &r) in part.iter().enumerate() {
                dh[r * d..(r + 1) * d].iter_mut().zip(&dhc[i * d..(i + 1) * d]).for_each(|(o, g)| *o += g);
            }
            if let Some(dt) = dtable.as_deref_mut() {
                matmul(dt, true, lt, Op::N, &hc, Op::N, (vocab, d, c), 1.0);
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

    /// Several row chunks and several vocabulary slices per chunk, against a plain f64 loop.
    #[test]
    fn chunked_vocabulary_major_passes_match_a_plain_softmax() {
        let (rows, d, vocab) = (300, 8, 2 * VOCAB_SLICE + 77);
        let h = pseudo_random(rows * d, 21);
        let table = pseudo_random(vocab * d, 22);
        let labels: Vec<u32> = (0..rows).map(|r| if r % 7 == 3 { IGNORE } else { (r * 131 % vocab) as u32 }).collect();
        let mut dh = vec![0.0; h.len()];
        let out = forward_backward(&h, &table, d, &labels, Some((0.5, &mut dh, None)));
        let (mut want_loss, mut worst) = (0.0f64, 0.0f64);
        for (r, &label) in labels.iter().enumerate() {
            let logit = |v: usize| (0..d).map(|j| h[r * d + j] as f64 * table[v * d + j] as f64).sum::<f64>();
            let l: Vec<f64> = (0..vocab).map(logit).collect();
            if label == IGNORE {
                assert!(dh[r * d..(r + 1) * d].iter().all(|&g| g == 0.0));
                continue;
            }
            let max = l.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = l.iter().map(|x| (x - max).exp()).sum();
            want_loss += max + sum.ln() - l[label as usize];
            for j in 0..d {
                let g: f64 = (0..vocab)
                    .map(|v| ((l[v] - max).exp() / sum - (v == label as usize) as u8 as f64) * table[v * d + j] as f64)
                    .sum();
                worst = worst.max((0.5 * g - dh[r * d + j] as f64).abs());
            }
        }
        assert_eq!(out.rows, labels.iter().filter(|&&l| l != IGNORE).count());
        assert!((out.loss_sum - want_loss).abs() < 1e-4 * want_loss, "{} vs {want_loss}", out.loss_sum);
        assert!(worst < 1e-5, "worst dh difference {worst}");
    }

    #[test]
    fn uniform_logits_give_log_vocab() {
        let (d, vocab) = (3, 7);
        let out = forward_backward(&[0.0; 3], &vec![0.5; vocab * d], d, &[2], None);
        assert!((out.loss_sum - (vocab as f64).ln()).abs() < 1e-9);
    }
}
