//! CPU matrix kernels for the quantization formats candle leaves slow on x86.
//!
//! candle 0.11 repacks k-quants (and Q8_0 when k is a multiple of 256) for AVX-512 but
//! computes Q4_1 (SmolLM2's format) with scalar code, and Q8_0 with 576- or 640-wide rows
//! (SmolLM2's and Gemma 3's embedding/output matrix) with AVX2: decoding ran at ~0.55x
//! llama.cpp. Here those weights are repacked at load time into tiles of 16 rows and
//! multiplied with AVX-512 VNNI, with a portable scalar fallback on the same layout.

// std::arch intrinsics are unsafe to call; the unsafety is confined to `tiled::avx512`
// (aligned loads from fixed-size tile arrays) and the feature check in `dispatch`.
#![allow(unsafe_code)]

mod tiled;

pub use tiled::TiledMatrix;

/// luodi's kernels are used unless `LUODI_KERNELS=candle` (to compare against stock candle).
pub fn enabled() -> bool {
    std::env::var("LUODI_KERNELS").map_or(true, |v| v != "candle")
}

/// Which implementation runs on this CPU.
pub fn simd_level() -> &'static str {
    if dispatch::has_avx512_vnni() {
        "avx512-vnni"
    } else if dispatch::has_avx2() {
        "avx2"
    } else {
        "scalar"
    }
}

mod dispatch {
    use super::tiled::{scalar, QuantRow, TileQ41, TileQ80, ROWS};

    pub fn has_avx512_vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static LEVEL: OnceLock<bool> = OnceLock::new();
            *LEVEL.get_or_init(|| {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn q41(tiles: &[TileQ41], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        assert!(acts.len() <= 4);
        #[cfg(target_arch = "x86_64")]
        if has_avx512_vnni() {
            // SAFETY: features checked above; at most 4 activation rows (asserted); rows were
            // quantized from inputs of this matrix's width, so they hold `tiles.len()` blocks.
            return unsafe { super::tiled::avx512::q41(tiles, acts, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: as above, for AVX2/FMA/F16C.
            return unsafe { super::tiled::avx2::q41(tiles, acts, out) };
        }
        scalar::q41(tiles, acts, out)
    }

    pub fn q80(tiles: &[TileQ80], acts: &[QuantRow], out: &mut [[f32; ROWS]; 4]) {
        assert!(acts.len() <= 4);
        #[cfg(target_arch = "x86_64")]
        if has_avx512_vnni() {
            // SAFETY: as in `q41`.
            return unsafe { super::tiled::avx512::q80(tiles, acts, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: as in `q41`.
            return unsafe { super::tiled::avx2::q80(tiles, acts, out) };
        }
        scalar::q80(tiles, acts, out)
    }
}
