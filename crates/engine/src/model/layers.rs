//! Building blocks shared by the architectures: quantized linear layers, RMS norm, rotary
//! position tables and causal (optionally sliding-window) attention over an engine-owned
//! KV cache.

use crate::error::{EngineError, Result};
use crate::kernels::TiledMatrix;
use candle_core::quantized::{gguf_file::Content, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::fs::File;
use std::sync::Arc;

/// Reads tensors out of an open GGUF file, naming the tensor when it is missing.
pub struct TensorSource<'a> {
    pub content: &'a Content,
    pub file: &'a mut File,
    pub device: &'a Device,
}

impl TensorSource<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            return Err(EngineError::MissingTensor { name: name.to_string() });
        }
        Ok(self.content.tensor(self.file, name, self.device)?)
    }

    pub fn linear(&mut self, name: &str) -> Result<Linear> {
        Linear::from_arc(Arc::new(self.qtensor(name)?))
    }

    pub fn rms_norm(&mut self, name: &str, eps: f64) -> Result<RmsNorm> {
        let weight = self.qtensor(name)?.dequantize(self.device)?;
        Ok(RmsNorm { weight, eps: eps as f32 })
    }
}

/// A (usually quantized) weight matrix applied as `x @ W^T`: luodi's own kernel where it
/// has one for the format (see `kernels`), candle's otherwise.
pub enum Linear {
    Tiled(TiledMatrix),
    Candle(QMatMul),
}

impl Linear {
    pub fn from_arc(t: Arc<QTensor>) -> Result<Self> {
        if crate::kernels::enabled() {
            if let Some(m) = TiledMatrix::from_qtensor(&t)? {
                return Ok(Self::Tiled(m));
            }
        }
        Ok(Self::Candle(QMatMul::from_arc(t)?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Tiled(m) => m.forward(x)?,
            Self::Candle(m) => m.forward(x)?,
        })
    }
}

/// Several projections of the same input (q, k, v or gate, up): one fused matmul when the
/// weights allow it, otherwise one matmul each. `forward` returns one tensor per projection.
pub enum Projections {
    Fused { matrix: TiledMatrix, widths: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    pub fn new(parts: Vec<Linear>) -> Self {
        let tiled: Vec<&TiledMatrix> =
            parts.iter().filter_map(|p| if let Linear::Tiled(m) = p { Some(m) } else { None }).collect();
        if tiled.len() == parts.len() {
            if let Some(matrix) = TiledMatrix::concat(&tiled) {
                let widths = tiled.iter().map(|m| m.out_features()).collect();
                return Self::Fused { matrix, widths };
            }
        }
        Self::Separate(parts)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Fused { matrix, widths } => {
                let all = matrix.forward(x)?;
                let last = all.rank() - 1;
                let mut out = Vec::with_capacity(widths.len());
                let mut offset = 0;
                for &w in widths {
                    out.push(all.narrow(last, offset, w)?);
                    offset += w;
                }
                Ok(out)
            }
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Normalizes over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)?)
    }
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x0, x1), (x2, x3): llama.cpp's "normal" mode, used for llama GGUFs
    /// whose q/k weights were permuted at conversion.
    Interleaved,
    /// First half with second half: llama.cpp's "neox" mode (Gemma, Qwen).
    Halves,
}

#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    style: RopeStyle,
}

impl Rope {
    pub fn new(head_dim: usize, base: f32, style: RopeStyle) -> Self {
        let inv_freq = (0..head_dim / 2).map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32)).collect();
        Self { inv_freq, style }
    }

    /// Fills `cos_sin` with the tables for position `pos`: `head_dim/2` cosines, then as
    /// many sines. Computed per position: cheaper than holding a full-context table (tens of
    /// MiB for a 32k context) and negligible next to the matmuls.
    pub fn tables(&self, pos: usize, cos_sin: &mut Vec<f32>) {
        let half = self.inv_freq.len();
        cos_sin.resize(2 * half, 0.0);
        let (cos, sin) = cos_sin.split_at_mut(half);
        for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
            (*s, *c) = (pos as f32 * f).sin_cos();
        }
    }

    /// Rotates every head of one row (`[heads * head_dim]`) in place with `tables`' output.
    pub fn rotate(&self, row: &mut [f32], head_dim: usize, cos_sin: &[f32]) {
        let half = head_dim / 2;
        let (cos, sin) = cos_sin.split_at(half);
        for head in row.chunks_exact_mut(head_dim) {
            match self.style {
                RopeStyle::Interleaved => {
                    for i in 0..half {
                        let (a, b) = (head[2 * i], head[2 * i + 1]);
                        head[2 * i] = a * cos[i] - b * sin[i];
                        head[2 * i + 1] = a * sin[i] + b * cos[i];
                    }
                }
                RopeStyle::Halves => {
                    for i in 0..half {
                        let (a, b) = (head[i], head[i + half]);
                        head[i] = a * cos[i] - b * sin[i];
                        head[i + half] = a * sin[i] + b * cos[i];
                    }
                }
            }
        }
    }
}

/// Geometry of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Keys further back than this many positions are not attended (sliding-window layers).
    pub window: Option<usize>,
}

/// The token embedding table and the output projection, which small models tie to it.
/// When tied and repacked for the output matmul, lookups read the repacked copy, so the
/// table is held once (it is the largest tensor of small models: 168 MiB in Gemma 3 270M).
pub struct TokenEmbedding {
    lookup: Option<Arc<QTensor>>,
    output: Linear,
}

impl TokenEmbedding {
    pub fn load(src: &mut TensorSource) -> Result<Self> {
        let table = Arc::new(src.qtensor("token_embd.weight")?);
        if src.has("output.weight") {
            return Ok(Self { output: src.linear("output.weight")?, lookup: Some(table) });
        }
        let output = Linear::from_arc(table.clone())?;
        let lookup = if matches!(output, Linear::Tiled(_)) { None } else { Some(table) };
        Ok(Self { lookup, output })
    }

    pub fn vocab_size(&self) -> usize {
        match (&self.lookup, &self.output) {
            (Some(t), _) => t.shape().dims()[0],
            (None, Linear::Tiled(m)) => m.out_features(),
            (None, Linear::Candle(_)) => 0,
        }
    }

    /// Embeddings of `ids`, `[ids.len(), hidden]`, dequantizing only those rows.
    pub fn embed(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match (&self.lookup, &self.output) {
            (Some(table), _) => Ok(table.embedding(&Tensor::new(ids, device)?)?),
            (None, Linear::Tiled(m)) => Ok(m.gather_rows(ids)?),
            (None, Linear::Candle(_)) => unreachable!("the table is kept unless the output is tiled"),
        }
    }

    /// Logits: `x @ W_out^T`.
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(x)
    }
}

/// q, k, v from a three-way projection.
pub fn projections3(p: &Projections, x: &Tensor) -> Result<[Tensor; 3]> {
    let mut v = p.forward(x)?.into_iter();
    match (v.next(), v.next(), v.next()) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(EngineError::Tensor(candle_core::Error::Msg("expected three projections".into()))),
    }
}

/// gate, up from a two-way projection.
pub fn projections2(p: &Projections, x: &Tensor) -> Result<[Tensor; 2]> {
    let mut v = p.forward(x)?.into_iter();
    match (v.next(), v.next()) {
        (Some(a), Some(b)) => Ok([a, b]),
        _ => Err(EngineError::Tensor(candle_core::Error::Msg("expected two projections".into()))),
    }
}

/// Logits for the last row of each sequence's slice of `hidden` (`[total_t, d]`).
pub fn last_rows(hidden: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(lens.len());
    let mut offset = 0;
    for &len in lens {
        offset += len;
        rows.push(hidden.narrow(0, offset - 1, 1)?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_pairs_by_position() {
        let rope = Rope::new(4, 10_000.0, RopeStyle::Interleaved);
        let mut tables = Vec::new();
        rope.tables(0, &mut tables);
        let mut row = vec![1.0, 2.0, 3.0, 4.0];
        rope.rotate(&mut row, 4, &tables);
        assert_eq!(row, vec![1.0, 2.0, 3.0, 4.0], "position 0 is the identity");
        rope.tables(1, &mut tables);
        let mut row = vec![1.0, 0.0, 1.0, 0.0];
        rope.rotate(&mut row, 4, &tables);
        // First pair turns by 1 radian; the second by 1/100 (base^(-2/4)).
        assert!((row[0] - 1f32.cos()).abs() < 1e-6 && (row[1] - 1f32.sin()).abs() < 1e-6);
        assert!((row[2] - 0.01f32.cos()).abs() < 1e-6 && (row[3] - 0.01f32.sin()).abs() < 1e-6);
        let halves = Rope::new(4, 10_000.0, RopeStyle::Halves);
        let mut row = vec![1.0, 1.0, 0.0, 0.0];
        halves.rotate(&mut row, 4, &tables);
        assert!((row[0] - 1f32.cos()).abs() < 1e-6 && (row[2] - 1f32.sin()).abs() < 1e-6);
    }
}
