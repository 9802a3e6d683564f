//! The tile kernels for x86 CPUs with AVX2 but without AVX-512 VNNI (AMD Zen 2/3, older
//! Intel). AVX2 has no `vpdpbusd`: `vpmaddubsw` multiplies unsigned by signed bytes into
//! pairs of i16, and `vpmaddwd` against ones sums the pairs into i32 lanes: the same four-way
//! dot product per lane. A 256-bit register holds 8 of a tile's 16 rows, so each tile is
//! done in two halves.

use super::{QuantRow, TileQ41, TileQ80, QK, ROWS};
use std::arch::x86_64::*;

/// Bytes `at..at + 4` of a 32-byte activation block in every 32-bit lane: one
/// `vpbroadcastd` from memory (building the value from four indexed bytes cost four loads
/// and bounds checks per broadcast, a third of the kernel's time).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast4(p: &[u8; QK], at: usize) -> __m256i {
    debug_assert!(at + 4 <= QK);
    // SAFETY: callers pass at <= 28, so the 4 bytes lie inside the 32-byte block.
    let v = unsafe { (p.as_ptr().add(at) as *const i32).read_unaligned() };
    _mm256_set1_epi32(v)
}

/// Four-way u8 x i8 dot products per i32 lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot4(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Activation block `b` (32 values) as bytes.
fn block(qs: &[i8], b: usize) -> &[u8; QK] {
    let s = &qs[b * QK..b * QK + QK];
    // SAFETY: i8 and u8 have the same size and alignment, every bit pattern is valid, and
    // the slice is exactly QK long.
    unsafe { &*(s.as_ptr() as *const [u8; QK]) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `acts.len() <= 4`; every activation row has
/// `tiles.len()` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q41(tiles: &[TileQ41], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
    let mask = _mm256_set1_epi8(0x0F);
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (b, t) in tiles.iter().enumerate() {
            let mut w = [_mm256_setzero_si256(); 8];
            for p in 0..4 {
                // SAFETY: 32 bytes at 64p + 32 half lie inside the 256-byte `qs`.
                let v = unsafe { _mm256_loadu_si256(t.qs.as_ptr().add(64 * p + 32 * half) as *const __m256i) };
                w[p] = _mm256_and_si256(v, mask);
                w[p + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            }
            // SAFETY: 8 f16 (16 bytes) at 8 half inside the 16-entry `d` and `m`.
            let (dw, mw) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(t.d.as_ptr().add(8 * half) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(t.m.as_ptr().add(8 * half) as *const __m128i)),
                )
            };
            for (i, a) in acts.iter().enumerate() {
                let aq = block(&a.qs, b);
                // Pairs of nibble x byte products summed in i16: each `vpmaddubsw` lane is at
                // most 2 * 15 * 127 = 3810, so all eight fit (30480 < 32767) and one
                // `vpmaddwd` per block widens them, instead of one per group.
                let mut pairs = _mm256_setzero_si256();
                for p in 0..4 {
                    pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(w[p], bcast4(aq, 4 * p)));
                    pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(w[p + 4], bcast4(aq, 16 + 4 * p)));
                }
                let isum = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[b]));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[i]);
                acc[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[b]), acc[i]);
            }
        }
        for (i, o) in out.iter_mut().take(acts.len()).enumerate() {
            // SAFETY: 8 f32 at 8 half inside the 16-entry row.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * half), acc[i]) };
        }
    }
}

/// # Safety
/// As for [`q41`].
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q80(tiles: &[TileQ80], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (b, t) in tiles.iter().enumerate() {
            // Both operands are signed here: multiply |w| (unsigned) by a with w's sign, so
            // no pair of products can saturate the i16 intermediate.
            let mut wabs = [_mm256_setzero_si256(); 8];
            let mut wsgn = [_mm256_setzero_si256(); 8];
            for g in 0..8 {
                // SAFETY: 32 bytes at 64g + 32 half lie inside the 512-byte `qs`.
                let v = unsafe { _mm256_loadu_si256(t.qs.as_ptr().add(64 * g + 32 * half) as *const __m256i) };
                wabs[g] = _mm256_sign_epi8(v, v);
                wsgn[g] = v;
            }
            // SAFETY: 8 f32 at 8 half inside the 16-entry `d`.
            let dw = unsafe { _mm256_loadu_ps(t.d.as_ptr().add(8 * half)) };
            for (i, a) in acts.iter().enumerate() {
                let aq = block(&a.qs, b);
                let mut isum = _mm256_setzero_si256();
                for g in 0..8 {
                    let signed_a = _mm256_sign_epi8(bcast4(aq, 4 * g), wsgn[g]);
                    isum = _mm256_add_epi32(isum, dot4(wabs[g], signed_a));
                }
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[b]));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[i]);
            }
        }
        for (i, o) in out.iter_mut().take(acts.len()).enumerate() {
            // SAFETY: 8 f32 at 8 half inside the 16-entry row.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * half), acc[i]) };
        }
    }
}
