//! Causal self-attention with grouped KV heads and an optional sliding window, over
//! sequences laid end to end (no padding: each sequence attends only within itself).
//!
//! Forward keeps the attention probabilities (one `len x len` block per sequence and head):
//! the backward then needs no softmax recomputation. Work is split per sequence and head
//! (forward) or per sequence and KV group (backward, so a group's dK/dV never races).

use super::fast_exp::exp;
use crate::gemm::{matmul, Op};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
}

impl Shape {
    fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// First key position row `i` may see.
    fn first_visible(&self, i: usize) -> usize {
        self.window.map_or(0, |w| (i + 1).saturating_sub(w))
    }
}

/// The probabilities of one forward pass, for the backward.
pub struct Saved {
    /// Per sequence, per head: `len x len`, zero above the diagonal and outside the window.
    probs: Vec<Vec<f32>>,
}

/// Copies columns `[col, col + hd)` of rows `[start, start + len)` of a `[rows, width]` matrix.
fn gather(m: &[f32], width: usize, start: usize, len: usize, col: usize, hd: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(len * hd);
    for r in start..start + len {
        out.extend_from_slice(&m[r * width + col..r * width + col + hd]);
    }
    out
}

fn scatter(m: &mut [f32], width: usize, start: usize, col: usize, block: &[f32], hd: usize) {
    for (i, row) in block.chunks_exact(hd).enumerate() {
        let at = (start + i) * width + col;
        m[at..at + hd].copy_from_slice(row);
    }
}

/// `q`: `[rows, n_heads*hd]`, `k`/`v`: `[rows, n_kv_heads*hd]` (already rotated); writes
/// `[rows, n_heads*hd]` into `out`. `seqs` are `(start_row, len)`.
pub fn forward(shape: &Shape, seqs: &[(usize, usize)], q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) -> Saved {
    let (nh, hd) = (shape.n_heads, shape.head_dim);
    let (qw, kw) = (nh * hd, shape.n_kv_heads * hd);
    let tasks: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..nh).map(move |h| (s, h))).collect();
    let results: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(s, h)| {
            let (start, len) = seqs[s];
            let g = h / shape.group();
            let qh = gather(q, qw, start, len, h * hd, hd);
            let kg = gather(k, kw, start, len, g * hd, hd);
            let vg = gather(v, kw, start, len, g * hd, hd);
            let mut p = vec![0.0; len * len];
            matmul(&mut p, false, &qh, Op::N, &kg, Op::T, (len, len, hd), shape.scale);
            for i in 0..len {
                let row = &mut p[i * len..(i + 1) * len];
                let lo = shape.first_visible(i);
                let max = row[lo..=i].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0.0;
                for x in &mut row[lo..=i] {
                    *x = exp(*x - max);
                    sum += *x;
                }
                row[..lo].fill(0.0);
                row[i + 1..].fill(0.0);
                row[lo..=i].iter_mut().for_each(|x| *x /= sum);
            }
            let mut o = vec![0.0; len * hd];
            matmul(&mut o, false, &p, Op::N, &vg, Op::N, (len, hd, len), 1.0);
            (p, o)
        })
        .collect();
    let mut probs = Vec::with_capacity(tasks.len());
    for (&(s, h), (p, o)) in tasks.iter().zip(results) {
        scatter(out, qw, seqs[s].0, h * hd, &o, hd);
        probs.push(p);
    }
    Saved { probs }
}

/// Writes the gradients with respect to the rotated `q`, `k`, `v` (overwriting `dq`, `dk`, `dv`).
pub fn backward(
    shape: &Shape,
    seqs: &[(usize, usize)],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    saved: &Saved,
    dout: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let (qw, kw, group) = (nh * hd, nkv * hd, shape.group());
    let tasks: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..nkv).map(move |g| (s, g))).collect();
    // Per task: dQ of each head in the group, then the group's dK and dV.
    type GroupGrads = (Vec<Vec<f32>>, Vec<f32>, Vec<f32>);
    let results: Vec<GroupGrads> = tasks
        .par_iter()
        .map(|&(s, g)| {
            let (start, len) = seqs[s];
            let kg = gather(k, kw, start, len, g * hd, hd);
            let vg = gather(v, kw, start, len, g * hd, hd);
            let (mut dkg, mut dvg) = (vec![0.0; len * hd], vec![0.0; len * hd]);
            let mut dqs = Vec::with_capacity(group);
            let mut ds = vec![0.0; len * len];
            for h in g * group..(g + 1) * group {
                let p = &saved.probs[s * nh + h];
                let qh = gather(q, qw, start, len, h * hd, hd);
                let doh = gather(dout, qw, start, len, h * hd, hd);
                matmul(&mut dvg, true, p, Op::T, &doh, Op::N, (len, hd, len), 1.0);
                matmul(&mut ds, false, &doh, Op::N, &vg, Op::T, (len, len, hd), 1.0);
                for (dsr, pr) in ds.chunks_exact_mut(len).zip(p.chunks_exact(len)) {
                    let dot: f32 = dsr.iter().zip(pr).map(|(a, b)| a * b).sum();
                    dsr.iter_mut().zip(pr).for_each(|(d, &pv)| *d = pv * (*d - dot));
                }
                let mut dqh = vec![0.0; len * hd];
                matmul(&mut dqh, false, &ds, Op::N, &kg, Op::N, (len, hd, len), shape.scale);
                matmul(&mut dkg, true, &ds, Op::T, &qh, Op::N, (len, hd, len), shape.scale);
                dqs.push(dqh);
            }
            (dqs, dkg, dvg)
        })
        .collect();
    for (&(s, g), (dqs, dkg, dvg)) in tasks.iter().zip(results) {
        let start = seqs[s].0;
        for (i, dqh) in dqs.iter().enumerate() {
            scatter(dq, qw, start, (g * group + i) * hd, dqh, hd);
        }
        scatter(dk, kw, start, g * hd, &dkg, hd);
        scatter(dv, kw, start, g * hd, &dvg, hd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};

    fn check(window: Option<usize>) {
        let shape = Shape { n_heads: 4, n_kv_heads: 2, head_dim: 4, scale: 0.5, window };
        let seqs = [(0, 5), (5, 3)];
        let rows = 8;
        let q = pseudo_random(rows * 16, 6);
        let k = pseudo_random(rows * 8, 7);
        let v = pseudo_random(rows * 8, 8);
        let dy = pseudo_random(rows * 16, 9);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut o = vec![0.0; rows * 16];
            forward(&shape, &seqs, q, k, v, &mut o);
            o.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        let mut o = vec![0.0; rows * 16];
        let saved = forward(&shape, &seqs, &q, &k, &v, &mut o);
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        backward(&shape, &seqs, &q, &k, &v, &saved, &dy, (&mut dq, &mut dk, &mut dv));
        check_gradient("attention dq", &q, &dq, |x| loss(x, &k, &v));
        check_gradient("attention dk", &k, &dk, |x| loss(&q, x, &v));
        check_gradient("attention dv", &v, &dv, |x| loss(&q, &k, x));
    }

    #[test]
    fn backward_matches_finite_differences() {
        check(None);
    }

    #[test]
    fn sliding_window_backward_matches_finite_differences() {
        check(Some(2));
    }

    #[test]
    fn sequences_do_not_see_each_other() {
        let shape = Shape { n_heads: 1, n_kv_heads: 1, head_dim: 2, scale: 1.0, window: None };
        let q = pseudo_random(8, 1);
        let (k, mut v) = (pseudo_random(8, 2), pseudo_random(8, 3));
        let mut a = vec![0.0; 8];
        forward(&shape, &[(0, 2), (2, 2)], &q, &k, &v, &mut a);
        v[6] += 5.0; // the second sequence's last value
        let mut b = vec![0.0; 8];
        forward(&shape, &[(0, 2), (2, 2)], &q, &k, &v, &mut b);
        assert_eq!(a[..4], b[..4], "the first sequence changed with the second's values");
        assert_ne!(a[4..], b[4..]);
    }
}
