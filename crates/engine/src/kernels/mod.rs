//! CPU matrix kernels for the quantization formats candle leaves scalar on x86.
//!
//! candle 0.11 has AVX-512 kernels for the k-quants and Q8_0 but computes Q4_1 (SmolLM2's
//! format) with scalar code: decoding ran at ~0.55x llama.cpp. Weights here are repacked at
//! load time into a SIMD-friendly layout; activations are quantized to 8 bits per 32-value
//! block and multiplied with AVX-512 VNNI `vpdpbusd`, with a portable scalar fallback.

// std::arch intrinsics and raw loads are inherently unsafe; the unsafety is confined to the
// dot-product functions, whose slice bounds are checked before the calls.
#![allow(unsafe_code)]

mod q4_1;

pub use q4_1::Q41Matrix;

/// luodi's kernels are used unless `LUODI_KERNELS=candle` (to compare against stock candle).
pub fn enabled() -> bool {
    std::env::var("LUODI_KERNELS").map_or(true, |v| v != "candle")
}

/// Whether the AVX-512 VNNI path is available on this CPU.
pub fn simd_level() -> &'static str {
    if q4_1::has_avx512_vnni() {
        "avx512-vnni"
    } else {
        "scalar"
    }
}
