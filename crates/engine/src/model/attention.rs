//! Causal self-attention for a whole batch over the engine-owned KV caches, in plain Rust.
//!
//! Why not candle ops: a batched decode step would issue a dozen small tensor ops per
//! sequence per layer (narrow, split heads, rope, cache write, two matmuls, mask, softmax,
//! transpose), whose fixed costs exceed the arithmetic. And determinism: here every query
//! row attends to exactly the keys it may see (`lo..=pos`), with reductions whose order
//! depends only on that range, so a token's output is bit-identical whether it is computed
//! alone, in a prefill chunk of any size, or next to other sequences in a batch. That is
//! what lets a batched request return the same greedy tokens as a solo one.

use super::layers::{AttentionShape, Rope};
use super::SeqBatch;
use crate::error::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// Below this many multiply-adds a step runs on the calling thread (rayon's fork/join
/// costs microseconds, a decode step's attention is about as cheap).
const PARALLEL_WORK: usize = 1 << 18;

/// `q` `[T, n_heads*hd]`, `k`/`v` `[T, n_kv*hd]`: the new rows of every sequence in
/// `batch`, stacked in batch order (q and k not yet rotated). Rotates q and k, appends k and
/// v to each sequence's cache for `layer`, and returns the attention output `[T, n_heads*hd]`.
pub fn attention(
    shape: &AttentionShape,
    rope: &Rope,
    layer: usize,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &mut [SeqBatch<'_>],
) -> Result<Tensor> {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let mut q = q.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let mut k = k.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let v = v.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let total_rows = q.len() / (nh * hd);

    // Rotate and append, sequence by sequence. `rows` maps each output row to its
    // sequence and position.
    let mut rows = Vec::with_capacity(total_rows);
    let mut cos_sin = Vec::new();
    let mut offset = 0;
    let mut work = 0;
    for (s, seq) in batch.iter_mut().enumerate() {
        let start = seq.kv.len();
        for i in 0..seq.tokens.len() {
            let (r, pos) = (offset + i, start + i);
            rope.tables(pos, &mut cos_sin);
            rope.rotate(&mut q[r * nh * hd..(r + 1) * nh * hd], hd, &cos_sin);
            rope.rotate(&mut k[r * nkv * hd..(r + 1) * nkv * hd], hd, &cos_sin);
            // Queries at f16 precision, like the keys and values in the cache (`kv_cache`):
            // llama.cpp's f16 attention path does the same, and greedy output follows it
            // more closely for it.
            for x in q[r * nh * hd..(r + 1) * nh * hd].iter_mut() {
                *x = half::f16::from_f32(*x).to_f32();
            }
            seq.kv.write(layer, pos, &k[r * nkv * hd..(r + 1) * nkv * hd], &v[r * nkv * hd..(r + 1) * nkv * hd]);
            rows.push((s, pos));
            work += (pos + 1 - visible_from(pos, shape.window)) * nh * hd;
        }
        offset += seq.tokens.len();
    }

    let caches: Vec<&crate::kv_cache::SequenceKv> = batch.iter().map(|s| &*s.kv).collect();
    let mut out = vec![0f32; total_rows * nh * hd];
    let run_row = |(r, out_row): (usize, &mut [f32])| {
        let (s, pos) = rows[r];
        let kv = caches[s];
        let lo = visible_from(pos, shape.window);
        let mut scores = vec![0f32; pos + 1 - lo];
        let group = nh / nkv;
        for h in 0..nh {
            let g = h / group;
            let keys = &kv.keys(layer, g)[lo * hd..(pos + 1) * hd];
            let values = &kv.values(layer, g)[lo * hd..(pos + 1) * hd];
            attend_row(
                &q[r * nh * hd + h * hd..r * nh * hd + (h + 1) * hd],
                keys,
                values,
                shape.scale,
                &mut scores,
                &mut out_row[h * hd..(h + 1) * hd],
            );
        }
    };
    if work >= PARALLEL_WORK {
        out.par_chunks_mut(nh * hd).enumerate().for_each(run_row);
    } else {
        out.chunks_mut(nh * hd).enumerate().for_each(run_row);
    }
    Ok(Tensor::from_vec(out, (total_rows, nh * hd), &Device::Cpu)?)
}

/// First key position a query at `pos` sees (sliding-window layers hide older keys).
fn visible_from(pos: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// One query head against its visible keys: `out = softmax(q.K^T * scale) V`.
/// `keys`/`values` hold `scores.len()` rows of `q.len()` values.
fn attend_row(q: &[f32], keys: &[f32], values: &[f32], scale: f32, scores: &mut [f32], out: &mut [f32]) {
    let hd = q.len();
    let mut max = f32::NEG_INFINITY;
    for (s, key) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
        *s = dot(q, key) * scale;
        max = max.max(*s);
    }
    let sum = exp_and_sum(scores, max);
    out.fill(0.0);
    for (&p, value) in scores.iter().zip(values.chunks_exact(hd)) {
        for (o, &x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// Dot product in 16 independent lanes (vectorized by the compiler), summed in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    hsum16(&acc) + tail
}

#[inline]
fn hsum16(acc: &[f32; 16]) -> f32 {
    let mut a8 = [0f32; 8];
    for l in 0..8 {
        a8[l] = acc[l] + acc[l + 8];
    }
    let a4 = [a8[0] + a8[4], a8[1] + a8[5], a8[2] + a8[6], a8[3] + a8[7]];
    (a4[0] + a4[2]) + (a4[1] + a4[3])
}

/// `s = exp(s - max)` in place; returns the sum (16 lanes, fixed order).
fn exp_and_sum(scores: &mut [f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = scores.chunks_exact_mut(16);
    for c in &mut chunks {
        for l in 0..16 {
            c[l] = exp(c[l] - max);
            acc[l] += c[l];
        }
    }
    let mut tail = 0f32;
    for s in chunks.into_remainder() {
        *s = exp(*s - max);
        tail += *s;
    }
    hsum16(&acc) + tail
}

/// e^x for x <= 0 (softmax after subtracting the max), within 2 ulp of the true value;
/// branch-free so the loops above vectorize. Range reduction x = n ln2 + r, |r| <= ln2/2,
/// then a degree-6 polynomial for e^r and 2^n built in the exponent bits.
#[inline]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this e^x is under f32's smallest normal: flush to zero (also for -inf).
    let x = x.max(-87.0);
    let n = (x * LOG2E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_on_the_softmax_range() {
        let mut worst = 0f64;
        for i in 0..100_000 {
            let x = -(i as f32) * 87.0 / 100_000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
        assert!(exp(-200.0) < 1e-37);
    }

    /// Straightforward softmax attention in f64, the reference for the kernel.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32) -> Vec<f32> {
        let hd = q.len();
        let scores: Vec<f64> = keys
            .chunks(hd)
            .map(|k| q.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64)
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..hd)
            .map(|d| (e.iter().zip(values.chunks(hd)).map(|(p, v)| p * v[d] as f64).sum::<f64>() / sum) as f32)
            .collect()
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_reference_attention() {
        for (hd, n, qscale) in
            [(64, 1, 1.0), (64, 37, 1.0), (256, 513, 1.0), (24, 5, 1.0), (64, 47, 30.0), (64, 47, 300.0)]
        {
            let q: Vec<f32> = data(hd, 1).iter().map(|x| x * qscale).collect();
            let keys = data(hd * n, 2);
            let values = data(hd * n, 3);
            let mut scores = vec![0f32; n];
            let mut out = vec![0f32; hd];
            attend_row(&q, &keys, &values, 0.3, &mut scores, &mut out);
            let want = reference(&q, &keys, &values, 0.3);
            for (g, w) in out.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "hd {hd} n {n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn window_hides_old_keys() {
        // A query at position 4 with a window of 2 sees keys 3 and 4 only.
        assert_eq!(visible_from(4, Some(2)), 3);
        assert_eq!(visible_from(1, Some(2)), 0);
        assert_eq!(visible_from(700, None), 0);
    }
}
