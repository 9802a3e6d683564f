//! Q4_1 weights x Q8_1 activations.
//!
//! Q4_1 stores 32 weights as `d * q + m` with 4-bit `q`; Q8_1 stores 32 activations as
//! `d * q` with 8-bit `q` and keeps `s = d * sum(q)`. Their dot product per block is
//! `d_w * d_a * sum(q_w * q_a) + m_w * s_a`, so the inner loop is an unsigned-by-signed
//! 8-bit dot product: exactly what `vpdpbusd` computes.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;
use rayon::prelude::*;

const QK: usize = 32;
const BLOCK_BYTES: usize = 20; // f16 d, f16 m, 16 bytes of nibbles

/// A Q4_1 weight matrix `[n, k]` repacked as separate scale, min and nibble arrays.
pub struct Q41Matrix {
    n: usize,
    k: usize,
    nb: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    qs: Vec<u8>,
}

/// One row of activations quantized to Q8_1.
struct Q8Row {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i8>,
}

impl Q41Matrix {
    /// Repacks a Q4_1 tensor; `None` for any other format or shape.
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Option<Self>> {
        if t.dtype() != GgmlDType::Q4_1 {
            return Ok(None);
        }
        let Ok((n, k)) = t.shape().dims2() else { return Ok(None) };
        if k % QK != 0 {
            return Ok(None);
        }
        let raw = t.data()?;
        let nb = k / QK;
        if raw.len() != n * nb * BLOCK_BYTES {
            return Ok(None);
        }
        let mut d = Vec::with_capacity(n * nb);
        let mut m = Vec::with_capacity(n * nb);
        let mut qs = Vec::with_capacity(n * nb * 16);
        for block in raw.chunks_exact(BLOCK_BYTES) {
            d.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            m.push(f16::from_le_bytes([block[2], block[3]]).to_f32());
            qs.extend_from_slice(&block[4..]);
        }
        Ok(Some(Self { n, k, nb, d, m, qs }))
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `x @ W^T` for `x` of shape `[.., k]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = *dims.last().unwrap_or(&0);
        if k != self.k {
            candle_core::bail!("q4_1 matmul: input has {k} features, weight expects {}", self.k);
        }
        let rows = x.elem_count() / k.max(1);
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let acts: Vec<Q8Row> = input.chunks_exact(k).map(quantize_row_q8_1).collect();
        let use_simd = has_avx512_vnni();
        // Work units of whole weight rows; small enough to balance, large enough that the
        // pool's scheduling cost is noise.
        let rows_per_task = (self.n / (rayon::current_num_threads() * 8)).clamp(16, 256);
        let mut out_t = vec![0f32; self.n * rows];
        out_t.par_chunks_mut(rows_per_task * rows).enumerate().for_each(|(task, chunk)| {
            let first = task * rows_per_task;
            for (r, out_row) in chunk.chunks_mut(rows).enumerate() {
                let j = first + r;
                let (d, m) = (&self.d[j * self.nb..(j + 1) * self.nb], &self.m[j * self.nb..(j + 1) * self.nb]);
                let qs = &self.qs[j * self.nb * 16..(j + 1) * self.nb * 16];
                for (o, act) in out_row.iter_mut().zip(&acts) {
                    *o = if use_simd { dot_avx512(qs, d, m, act) } else { dot_scalar(qs, d, m, act) };
                }
            }
        });
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap_or(&mut 0) = self.n;
        if rows == 1 {
            return Tensor::from_vec(out_t, out_dims, &Device::Cpu);
        }
        // out_t is [n, rows]; callers want [rows, n].
        Tensor::from_vec(out_t, (self.n, rows), &Device::Cpu)?.t()?.contiguous()?.reshape(out_dims)
    }
}

fn quantize_row_q8_1(x: &[f32]) -> Q8Row {
    let nb = x.len() / QK;
    let mut row = Q8Row { d: Vec::with_capacity(nb), s: Vec::with_capacity(nb), qs: Vec::with_capacity(x.len()) };
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for &v in block {
            let q = (v * id).round() as i8;
            sum += q as i32;
            row.qs.push(q);
        }
        row.d.push(d);
        row.s.push(d * sum as f32);
    }
    row
}

fn dot_scalar(qs: &[u8], d: &[f32], m: &[f32], a: &Q8Row) -> f32 {
    let mut sum = 0f32;
    for b in 0..d.len() {
        let w = &qs[b * 16..b * 16 + 16];
        let y = &a.qs[b * QK..b * QK + QK];
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (w[j] & 0x0F) as i32 * y[j] as i32 + (w[j] >> 4) as i32 * y[j + 16] as i32;
        }
        sum += d[b] * a.d[b] * isum as f32 + m[b] * a.s[b];
    }
    sum
}

pub(super) fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<bool> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn dot_avx512(qs: &[u8], d: &[f32], m: &[f32], a: &Q8Row) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        let nb = d.len();
        assert!(qs.len() >= nb * 16 && m.len() >= nb && a.qs.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb);
        // SAFETY: the CPU features were checked by `has_avx512_vnni` (the only caller path),
        // and every load below stays within the lengths asserted above.
        unsafe { avx512::dot(qs, d, m, a) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        dot_scalar(qs, d, m, a)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Q8Row, QK};
    use std::arch::x86_64::*;

    /// The 32 nibbles of one block as 32 bytes in value order (low nibbles are values
    /// 0..16, high nibbles 16..32, as ggml packs them).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let v = _mm_loadu_si128(p as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
        _mm256_set_m128i(hi, lo)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(super) unsafe fn dot(qs: &[u8], d: &[f32], m: &[f32], a: &Q8Row) -> f32 {
        let nb = d.len();
        let wq = qs.as_ptr();
        let aq = a.qs.as_ptr() as *const u8;
        let mut acc = _mm512_setzero_ps();
        let mut b = 0;
        // Two blocks per 512-bit register: lanes 0..8 hold block b, lanes 8..16 block b+1.
        while b + 2 <= nb {
            let x = _mm512_inserti64x4(_mm512_castsi256_si512(nibbles(wq.add(b * 16))), nibbles(wq.add(b * 16 + 16)), 1);
            let y = _mm512_loadu_si512(aq.add(b * QK) as *const __m512i);
            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y);
            let scale = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm256_set1_ps(d[b] * a.d[b])),
                _mm256_set1_ps(d[b + 1] * a.d[b + 1]),
                1,
            );
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
            b += 2;
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        if b < nb {
            let x = nibbles(wq.add(b * 16));
            let y = _mm256_loadu_si256(aq.add(b * QK) as *const __m256i);
            let dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y);
            let lanes = _mm256_cvtepi32_ps(dot);
            let s = _mm_add_ps(_mm256_castps256_ps128(lanes), _mm256_extractf128_ps(lanes, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            sum += _mm_cvtss_f32(s) * d[b] * a.d[b];
        }
        for i in 0..nb {
            sum += m[i] * a.s[i];
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q4_1 tensor from known values, through candle's own quantizer.
    fn matrix(n: usize, k: usize) -> (Tensor, QTensor) {
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        (q.dequantize(&Device::Cpu).unwrap(), q)
    }

    fn input(rows: usize, k: usize) -> Tensor {
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104729 % 997) as f32 / 498.0 - 1.0)).collect();
        Tensor::from_vec(x, (rows, k), &Device::Cpu).unwrap()
    }

    fn check(n: usize, k: usize, rows: usize) {
        let (dense, q) = matrix(n, k);
        let ours = Q41Matrix::from_qtensor(&q).unwrap().expect("q4_1");
        let x = input(rows, k);
        let got = ours.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let want = x.matmul(&dense.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            // 8-bit activations: error well under 1% of the magnitude of these sums.
            assert!((g - w).abs() < 0.02 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn matches_dense_matmul_single_row() {
        check(64, 576, 1); // 18 blocks: exercises the odd-block tail
    }

    #[test]
    fn matches_dense_matmul_many_rows() {
        check(48, 64, 5);
    }

    #[test]
    fn simd_and_scalar_agree() {
        let (_, q) = matrix(8, 576);
        let ours = Q41Matrix::from_qtensor(&q).unwrap().unwrap();
        let x = input(1, 576).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let act = quantize_row_q8_1(&x);
        for j in 0..8 {
            let nb = ours.nb;
            let (d, m, qs) = (&ours.d[j * nb..(j + 1) * nb], &ours.m[j * nb..(j + 1) * nb], &ours.qs[j * nb * 16..(j + 1) * nb * 16]);
            let s = dot_scalar(qs, d, m, &act);
            let v = dot_avx512(qs, d, m, &act);
            assert!((s - v).abs() < 1e-3 * (1.0 + s.abs()), "{s} vs {v}");
        }
    }

    #[test]
    fn other_formats_are_declined() {
        let w = Tensor::zeros((32, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q41Matrix::from_qtensor(&q).unwrap().is_none());
    }
}
