//! Weights repacked in tiles of 16 output rows x one 32-value block, multiplied with
//! 8-bit activations by AVX-512 VNNI.
//!
//! One `vpdpbusd` multiplies 4 consecutive k-values of all 16 rows (64 weight bytes) with the
//! same 4 activation bytes broadcast to every lane, so a block of 16 rows takes 8 of them and
//! its 16 per-row scales are applied with one vector multiply-add. Decoding (one activation
//! row) streams each weight byte once; prefill reuses the unpacked weights of a tile for up
//! to four activation rows at a time. The same layout has a scalar fallback for other CPUs.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;
use rayon::prelude::*;

pub(super) const QK: usize = 32;
pub(super) const ROWS: usize = 16;

/// Q4_1 (`d * q + m`, 4-bit q): nibbles of 16 rows for one block.
/// `qs[64 p + 4 r + j]` is ggml's raw byte `4p + j` of row `r`: its low nibble is value
/// `4p + j` and its high nibble value `4p + j + 16`, so a 64-byte load yields two groups.
/// Scales stay f16 as in the file: decoding is bound by memory bandwidth, and f32 scales
/// would make every tile 20% larger.
#[derive(Clone)]
#[repr(C, align(64))]
pub(super) struct TileQ41 {
    qs: [u8; 256],
    d: [f16; ROWS],
    m: [f16; ROWS],
}

/// Q8_0 (`d * q`, signed 8-bit q): `qs[64 g + 4 r + j]` is value `4g + j` of row `r`.
/// Activations enter `vpdpbusd` as its unsigned operand offset by +128; `corr` holds
/// `-128 * sum(q)` per row to take the offset back out.
#[derive(Clone)]
#[repr(C, align(64))]
pub(super) struct TileQ80 {
    qs: [i8; 512],
    d: [f32; ROWS],
    corr: [i32; ROWS],
}

enum Tiles {
    Q41(Vec<TileQ41>),
    Q80(Vec<TileQ80>),
}

/// A quantized weight matrix `[n, k]` in tiles, `tiles[tile * nb + block]`.
pub struct TiledMatrix {
    n: usize,
    k: usize,
    nb: usize,
    tiles: Tiles,
}

/// Activations quantized per 32-value block: `d * q`, with `s = d * sum(q)` (for Q4_1's
/// min term) and the +128-offset bytes for the Q8_0 kernel.
pub(super) struct QuantRow {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i8>,
    qs_u: Vec<u8>,
}

impl TiledMatrix {
    /// Repacks a Q4_1 or Q8_0 matrix whose rows come in multiples of 16; `None` otherwise.
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Option<Self>> {
        let Ok((n, k)) = t.shape().dims2() else { return Ok(None) };
        if n % ROWS != 0 || k % QK != 0 {
            return Ok(None);
        }
        let nb = k / QK;
        let tiles = match t.dtype() {
            GgmlDType::Q4_1 => Tiles::Q41(repack_q41(&t.data()?, n, nb)),
            GgmlDType::Q8_0 => Tiles::Q80(repack_q80(&t.data()?, n, nb)),
            _ => return Ok(None),
        };
        Ok(Some(Self { n, k, nb, tiles }))
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Stacks matrices with the same input width and format into one (rows of the first,
    /// then the second, ...), so projections of the same input (q, k, v; gate, up) share one
    /// activation quantization and one parallel pass. `None` when widths or formats differ.
    pub fn concat(parts: &[&TiledMatrix]) -> Option<TiledMatrix> {
        let first = parts.first()?;
        let (k, nb) = (first.k, first.nb);
        if parts.iter().any(|p| p.k != k) {
            return None;
        }
        let n = parts.iter().map(|p| p.n).sum();
        let tiles = match &first.tiles {
            Tiles::Q41(_) => {
                let mut all = Vec::new();
                for p in parts {
                    let Tiles::Q41(t) = &p.tiles else { return None };
                    all.extend_from_slice(t);
                }
                Tiles::Q41(all)
            }
            Tiles::Q80(_) => {
                let mut all = Vec::new();
                for p in parts {
                    let Tiles::Q80(t) = &p.tiles else { return None };
                    all.extend_from_slice(t);
                }
                Tiles::Q80(all)
            }
        };
        Some(TiledMatrix { n, k, nb, tiles })
    }

    /// Dequantized rows `ids` as `[ids.len(), k]` (an embedding lookup on a tied table).
    pub fn gather_rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let mut out = Vec::with_capacity(ids.len() * self.k);
        for &id in ids {
            let id = id as usize;
            if id >= self.n {
                candle_core::bail!("token id {id} is outside the table ({} rows)", self.n);
            }
            let (tile, r) = (id / ROWS, id % ROWS);
            for b in 0..self.nb {
                match &self.tiles {
                    Tiles::Q41(t) => {
                        let t = &t[tile * self.nb + b];
                        let (d, m) = (t.d[r].to_f32(), t.m[r].to_f32());
                        let byte = |j: usize| t.qs[64 * (j / 4) + 4 * r + j % 4];
                        out.extend((0..16).map(|j| d * (byte(j) & 0x0F) as f32 + m));
                        out.extend((0..16).map(|j| d * (byte(j) >> 4) as f32 + m));
                    }
                    Tiles::Q80(t) => {
                        let t = &t[tile * self.nb + b];
                        out.extend((0..QK).map(|j| t.d[r] * t.qs[64 * (j / 4) + 4 * r + j % 4] as f32));
                    }
                }
            }
        }
        Tensor::from_vec(out, (ids.len(), self.k), &Device::Cpu)
    }

    /// `x @ W^T` for `x` of shape `[.., k]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = dims.last().copied().unwrap_or(0);
        if k != self.k {
            candle_core::bail!("quantized matmul: input has {k} features, weight expects {}", self.k);
        }
        let m = x.elem_count() / k.max(1);
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let acts: Vec<QuantRow> = if m >= 8 {
            input.par_chunks_exact(k).map(quantize_row).collect()
        } else {
            input.chunks_exact(k).map(quantize_row).collect()
        };
        let n_tiles = self.n / ROWS;
        // A few tasks per thread balance the load; more only adds scheduling cost.
        let per_task = n_tiles.div_ceil(rayon::current_num_threads() * 4).max(1);
        let mut out_t = vec![0f32; self.n * m];
        out_t.par_chunks_mut(per_task * ROWS * m).enumerate().for_each(|(task, chunk)| {
            for (i, out) in chunk.chunks_mut(ROWS * m).enumerate() {
                let tile = task * per_task + i;
                self.tile_forward(tile, &acts, out);
            }
        });
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.n;
        }
        if m == 1 {
            return Tensor::from_vec(out_t, out_dims, &Device::Cpu);
        }
        // out_t is [n, m]; callers want [m, n]. A plain loop: candle's strided copy is
        // generic over layouts and cost more than this on every batched matmul.
        let n = self.n;
        // Blocks of 64 output features keep both sides of the transpose in L1.
        let mut out = vec![0f32; n * m];
        for j0 in (0..n).step_by(64) {
            let j1 = (j0 + 64).min(n);
            for i in 0..m {
                let row = &mut out[i * n + j0..i * n + j1];
                for (o, j) in row.iter_mut().zip(j0..j1) {
                    *o = out_t[j * m + i];
                }
            }
        }
        Tensor::from_vec(out, out_dims, &Device::Cpu)
    }

    /// Rows `16 tile .. 16 tile + 16` for every activation row; `out[r * m + i]`.
    fn tile_forward(&self, tile: usize, acts: &[QuantRow], out: &mut [f32]) {
        let m = acts.len();
        let mut row_major = [[0f32; ROWS]; 4];
        for (c, group) in acts.chunks(4).enumerate() {
            match &self.tiles {
                Tiles::Q41(t) => super::dispatch::q41(&t[tile * self.nb..(tile + 1) * self.nb], group, &mut row_major),
                Tiles::Q80(t) => super::dispatch::q80(&t[tile * self.nb..(tile + 1) * self.nb], group, &mut row_major),
            }
            for (i, acc) in row_major.iter().take(group.len()).enumerate() {
                for (r, &v) in acc.iter().enumerate() {
                    out[r * m + c * 4 + i] = v;
                }
            }
        }
    }
}

fn repack_q41(raw: &[u8], n: usize, nb: usize) -> Vec<TileQ41> {
    const BLOCK: usize = 20; // f16 d, f16 m, 16 nibble bytes
    let mut tiles = Vec::with_capacity(n / ROWS * nb);
    for tile in 0..n / ROWS {
        for b in 0..nb {
            let mut t = TileQ41 { qs: [0; 256], d: [f16::ZERO; ROWS], m: [f16::ZERO; ROWS] };
            for r in 0..ROWS {
                let off = ((tile * ROWS + r) * nb + b) * BLOCK;
                let block = &raw[off..off + BLOCK];
                t.d[r] = f16::from_le_bytes([block[0], block[1]]);
                t.m[r] = f16::from_le_bytes([block[2], block[3]]);
                for p in 0..4 {
                    t.qs[64 * p + 4 * r..64 * p + 4 * r + 4].copy_from_slice(&block[4 + 4 * p..8 + 4 * p]);
                }
            }
            tiles.push(t);
        }
    }
    tiles
}

fn repack_q80(raw: &[u8], n: usize, nb: usize) -> Vec<TileQ80> {
    const BLOCK: usize = 34; // f16 d, 32 signed bytes
    let mut tiles = Vec::with_capacity(n / ROWS * nb);
    for tile in 0..n / ROWS {
        for b in 0..nb {
            let mut t = TileQ80 { qs: [0; 512], d: [0.0; ROWS], corr: [0; ROWS] };
            for r in 0..ROWS {
                let off = ((tile * ROWS + r) * nb + b) * BLOCK;
                let block = &raw[off..off + BLOCK];
                t.d[r] = f16::from_le_bytes([block[0], block[1]]).to_f32();
                let q = &block[2..];
                t.corr[r] = -128 * q.iter().map(|&v| v as i8 as i32).sum::<i32>();
                for g in 0..8 {
                    for j in 0..4 {
                        t.qs[64 * g + 4 * r + j] = q[4 * g + j] as i8;
                    }
                }
            }
            tiles.push(t);
        }
    }
    tiles
}

/// Symmetric 8-bit quantization per 32 values, as ggml's Q8_0/Q8_1 (round half away from zero).
pub(super) fn quantize_row(x: &[f32]) -> QuantRow {
    let nb = x.len() / QK;
    // Written through slices rather than pushed value by value, so the loops vectorize.
    let mut row = QuantRow { d: vec![0.0; nb], s: vec![0.0; nb], qs: vec![0; nb * QK], qs_u: vec![0; nb * QK] };
    for (b, (block, qs)) in x.chunks_exact(QK).zip(row.qs.chunks_exact_mut(QK)).enumerate() {
        let amax = block.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in qs.iter_mut().zip(block) {
            *q = (v * id).round() as i8;
        }
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        row.d[b] = d;
        row.s[b] = d * sum as f32;
    }
    for (u, &q) in row.qs_u.iter_mut().zip(&row.qs) {
        *u = (q as u8) ^ 0x80;
    }
    row
}

/// Portable kernels over the same tiles (and the reference for the SIMD ones in tests).
pub(super) mod scalar {
    use super::*;

    pub fn q41(tiles: &[TileQ41], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        for (i, a) in acts.iter().enumerate() {
            let mut acc = [0f32; ROWS];
            for (b, t) in tiles.iter().enumerate() {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let mut isum = 0i32;
                    for p in 0..4 {
                        for j in 0..4 {
                            let byte = t.qs[64 * p + 4 * r + j];
                            isum += (byte & 0x0F) as i32 * a.qs[b * QK + 4 * p + j] as i32;
                            isum += (byte >> 4) as i32 * a.qs[b * QK + 16 + 4 * p + j] as i32;
                        }
                    }
                    *acc_r += isum as f32 * t.d[r].to_f32() * a.d[b] + t.m[r].to_f32() * a.s[b];
                }
            }
            out[i] = acc;
        }
    }

    pub fn q80(tiles: &[TileQ80], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        for (i, a) in acts.iter().enumerate() {
            let mut acc = [0f32; ROWS];
            for (b, t) in tiles.iter().enumerate() {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let mut isum = 0i32;
                    for g in 0..8 {
                        for j in 0..4 {
                            isum += t.qs[64 * g + 4 * r + j] as i32 * a.qs[b * QK + 4 * g + j] as i32;
                        }
                    }
                    *acc_r += isum as f32 * t.d[r] * a.d[b];
                }
            }
            out[i] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "tiled_avx2.rs"]
pub(super) mod avx2;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn bcast4(p: &[u8], at: usize) -> __m512i {
        let v = i32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        _mm512_set1_epi32(v)
    }

    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI; `acts.len() <= 4`; every activation row
    /// has `tiles.len()` blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn q41(tiles: &[TileQ41], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        let mask = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); 4];
        for (b, t) in tiles.iter().enumerate() {
            // Unpack the tile once: w[p] holds values 4p..4p+4, w[p+4] values 4p+16..4p+20.
            let mut w = [_mm512_setzero_si512(); 8];
            for p in 0..4 {
                // SAFETY: `qs` is 256 bytes, 64-byte aligned (repr align 64, offset 0).
                let v = unsafe { _mm512_load_si512(t.qs.as_ptr().add(64 * p) as *const __m512i) };
                w[p] = _mm512_and_si512(v, mask);
                w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
            }
            // SAFETY: `d` and `m` are 16 f16 each (32 bytes); loads are unaligned-tolerant.
            let (dw, mw) = unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(t.d.as_ptr() as *const __m256i)),
                    _mm512_cvtph_ps(_mm256_loadu_si256(t.m.as_ptr() as *const __m256i)),
                )
            };
            for (i, a) in acts.iter().enumerate() {
                let aq: &[u8] = bytemuck_i8(&a.qs[b * QK..b * QK + QK]);
                let mut isum = _mm512_setzero_si512();
                for p in 0..4 {
                    isum = _mm512_dpbusd_epi32(isum, w[p], bcast4(aq, 4 * p));
                    isum = _mm512_dpbusd_epi32(isum, w[p + 4], bcast4(aq, 16 + 4 * p));
                }
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[b]));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[i]);
                acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s[b]), acc[i]);
            }
        }
        for (i, o) in out.iter_mut().take(acts.len()).enumerate() {
            // SAFETY: `o` is 16 f32.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc[i]) };
        }
    }

    /// # Safety
    /// As for [`q41`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn q80(tiles: &[TileQ80], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        let mut acc = [_mm512_setzero_ps(); 4];
        for (b, t) in tiles.iter().enumerate() {
            let mut w = [_mm512_setzero_si512(); 8];
            for (g, wg) in w.iter_mut().enumerate() {
                // SAFETY: `qs` is 512 bytes, 64-byte aligned.
                *wg = unsafe { _mm512_load_si512(t.qs.as_ptr().add(64 * g) as *const __m512i) };
            }
            // SAFETY: `d` is 16 f32 and `corr` 16 i32.
            let (dw, corr) =
                unsafe { (_mm512_loadu_ps(t.d.as_ptr()), _mm512_loadu_si512(t.corr.as_ptr() as *const __m512i)) };
            for (i, a) in acts.iter().enumerate() {
                let au = &a.qs_u[b * QK..b * QK + QK];
                let mut isum = corr;
                for (g, wg) in w.iter().enumerate() {
                    isum = _mm512_dpbusd_epi32(isum, bcast4(au, 4 * g), *wg);
                }
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[b]));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[i]);
            }
        }
        for (i, o) in out.iter_mut().take(acts.len()).enumerate() {
            // SAFETY: `o` is 16 f32.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc[i]) };
        }
    }

    fn bytemuck_i8(x: &[i8]) -> &[u8] {
        // SAFETY: i8 and u8 have the same size and alignment; every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, x.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_and_quantized(n: usize, k: usize, dtype: GgmlDType) -> (Tensor, QTensor) {
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        (q.dequantize(&Device::Cpu).unwrap(), q)
    }

    fn input(rows: usize, k: usize) -> Tensor {
        let x: Vec<f32> = (0..rows * k).map(|i| (i * 104729 % 997) as f32 / 498.0 - 1.0).collect();
        Tensor::from_vec(x, (rows, k), &Device::Cpu).unwrap()
    }

    fn check(dtype: GgmlDType, n: usize, k: usize, rows: usize) {
        let (dense, q) = dense_and_quantized(n, k, dtype);
        let ours = TiledMatrix::from_qtensor(&q).unwrap().expect("supported");
        let x = input(rows, k);
        let got = ours.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let want = x.matmul(&dense.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            // 8-bit activations: well under 1% of the magnitude of these sums.
            assert!((g - w).abs() < 0.02 * (1.0 + w.abs()), "{dtype:?} {n}x{k} rows {rows}: {g} vs {w}");
        }
    }

    #[test]
    fn q41_matches_dense_matmul() {
        check(GgmlDType::Q4_1, 64, 576, 1);
        check(GgmlDType::Q4_1, 32, 64, 7); // two chunks of activation rows (4 + 3)
    }

    #[test]
    fn q80_matches_dense_matmul() {
        check(GgmlDType::Q8_0, 48, 640, 1);
        check(GgmlDType::Q8_0, 16, 96, 5);
    }

    #[test]
    fn simd_equals_scalar() {
        // Every SIMD kernel this CPU can run is compared, not only the one dispatch picks: on
        // an AVX-512 machine the AVX2 kernel must be tested too.
        type Kernel<T> = fn(&[T], &[QuantRow], &mut [[f32; ROWS]; 4]);
        #[allow(unused_mut)]
        let mut kernels: Vec<(&str, Kernel<TileQ41>, Kernel<TileQ80>)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if super::super::dispatch::has_avx512_vnni() {
                // SAFETY: the features were checked just above; at most 4 rows, of this width.
                kernels.push((
                    "avx512",
                    |t, a, o| unsafe { avx512::q41(t, a, o) },
                    |t, a, o| unsafe { avx512::q80(t, a, o) },
                ));
            }
            if super::super::dispatch::has_avx2() {
                // SAFETY: as above, for AVX2/FMA/F16C.
                kernels.push((
                    "avx2",
                    |t, a, o| unsafe { avx2::q41(t, a, o) },
                    |t, a, o| unsafe { avx2::q80(t, a, o) },
                ));
            }
        }
        for (level, q41, q80) in kernels {
            for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
                let (_, q) = dense_and_quantized(32, 192, dtype);
                let m = TiledMatrix::from_qtensor(&q).unwrap().unwrap();
                for rows in 1..=4 {
                    let x = input(rows, 192).flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let acts: Vec<QuantRow> = x.chunks_exact(192).map(quantize_row).collect();
                    let (mut a, mut b) = ([[0f32; ROWS]; 4], [[0f32; ROWS]; 4]);
                    match &m.tiles {
                        Tiles::Q41(t) => {
                            scalar::q41(&t[..m.nb], &acts, &mut a);
                            q41(&t[..m.nb], &acts, &mut b);
                        }
                        Tiles::Q80(t) => {
                            scalar::q80(&t[..m.nb], &acts, &mut a);
                            q80(&t[..m.nb], &acts, &mut b);
                        }
                    }
                    assert!(a[..rows].iter().flatten().any(|v| *v != 0.0), "{level} {dtype:?}: all zero");
                    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                            "{level} {dtype:?} rows {rows}: scalar {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gathered_rows_equal_dequantized_rows() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (dense, q) = dense_and_quantized(48, 64, dtype);
            let m = TiledMatrix::from_qtensor(&q).unwrap().unwrap();
            let got = m.gather_rows(&[0, 17, 47]).unwrap().to_vec2::<f32>().unwrap();
            let dense = dense.to_vec2::<f32>().unwrap();
            for (g, want) in got.iter().zip([&dense[0], &dense[17], &dense[47]]) {
                for (a, b) in g.iter().zip(want.iter()) {
                    assert!((a - b).abs() < 1e-6, "{dtype:?}: {a} vs {b}");
                }
            }
            assert!(m.gather_rows(&[48]).is_err());
        }
    }

    #[test]
    fn concat_equals_separate_matmuls() {
        let (_, a) = dense_and_quantized(32, 64, GgmlDType::Q4_1);
        let (_, b) = dense_and_quantized(16, 64, GgmlDType::Q4_1);
        let x = input(2, 64);
        let ta = TiledMatrix::from_qtensor(&a).unwrap().unwrap();
        let tb = TiledMatrix::from_qtensor(&b).unwrap().unwrap();
        let want = Tensor::cat(&[ta.forward(&x).unwrap(), tb.forward(&x).unwrap()], 1).unwrap();
        let fused = TiledMatrix::concat(&[&ta, &tb]).unwrap();
        assert_eq!(fused.out_features(), 48);
        assert_eq!(fused.forward(&x).unwrap().to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
        let (_, c) = dense_and_quantized(16, 64, GgmlDType::Q8_0);
        let (_, d) = dense_and_quantized(16, 64, GgmlDType::Q4_1);
        let (c, d) = (TiledMatrix::from_qtensor(&c).unwrap().unwrap(), TiledMatrix::from_qtensor(&d).unwrap().unwrap());
        assert!(TiledMatrix::concat(&[&c, &d]).is_none(), "formats must not mix");
    }

    #[test]
    fn unsupported_shapes_and_formats_are_declined() {
        let (_, q) = dense_and_quantized(24, 64, GgmlDType::Q4_1); // 24 rows: not a multiple of 16
        assert!(TiledMatrix::from_qtensor(&q).unwrap().is_none());
        let (_, q) = dense_and_quantized(32, 256, GgmlDType::Q4K);
        assert!(TiledMatrix::from_qtensor(&q).unwrap().is_none());
    }
}
