//! Building blocks shared by the architectures: quantized linear layers, RMS norm, rotary
//! position tables and causal (optionally sliding-window) attention over an engine-owned
//! KV cache.

use crate::error::{EngineError, Result};
use crate::kernels::TiledMatrix;
use crate::kv_cache::SequenceKv;
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

    /// Rotates `x` of shape `[heads, t, head_dim]` whose rows are positions `start..start+t`.
    /// The tables are computed for just these positions: cheaper than holding a full-context
    /// table (tens of MiB for a 32k context) and negligible next to the matmuls.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(1)?;
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in start..start + t {
            for &f in &self.inv_freq {
                let (s, c) = (p as f32 * f).sin_cos();
                cos.push(c);
                sin.push(s);
            }
        }
        let cos = Tensor::from_vec(cos, (t, half), x.device())?;
        let sin = Tensor::from_vec(sin, (t, half), x.device())?;
        let x4 = x.unsqueeze(0)?;
        let out = match self.style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x4, &cos, &sin)?,
            RopeStyle::Halves => candle_nn::rotary_emb::rope(&x4, &cos, &sin)?,
        };
        Ok(out.squeeze(0)?)
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

/// `[t, heads*head_dim]` -> `[heads, t, head_dim]` (contiguous).
pub fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let t = x.dim(0)?;
    Ok(x.reshape((t, heads, head_dim))?.transpose(0, 1)?.contiguous()?)
}

/// Causal attention of `q` (`[n_heads, t, hd]`, already rotated) against the sequence's cache
/// after appending `k`/`v` (`[n_kv_heads, t, hd]`). Returns `[t, n_heads*hd]`.
/// Grouped-query attention is done by folding each group's heads into the row dimension,
/// so keys and values are never copied per query head.
pub fn attend(
    shape: &AttentionShape,
    layer: usize,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv: &mut SequenceKv,
) -> Result<Tensor> {
    let t = q.dim(1)?;
    let start = kv.len();
    let (keys, values) = kv.append(layer, k, v)?;
    let total = start + t;
    let group = shape.n_heads / shape.n_kv_heads;
    let hd = shape.head_dim;

    let q = q.reshape((shape.n_kv_heads, group * t, hd))?;
    let scores = (q.matmul(&keys.t()?)? * shape.scale as f64)?;
    let scores = match attention_mask(t, start, total, shape.window) {
        None => scores,
        Some(mask) => {
            let mask = Tensor::from_vec(mask, (t, total), q.device())?;
            scores.reshape((shape.n_kv_heads, group, t, total))?.broadcast_add(&mask)?.reshape((
                shape.n_kv_heads,
                group * t,
                total,
            ))?
        }
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.matmul(&values.contiguous()?)?; // [n_kv, group*t, hd]
    let out = out.reshape((shape.n_heads, t, hd))?.transpose(0, 1)?;
    Ok(out.reshape((t, shape.n_heads * hd))?)
}

/// Additive mask for queries at positions `start..start+t` over keys `0..total`, or `None`
/// when every key is visible (a single decode step within the window).
fn attention_mask(t: usize, start: usize, total: usize, window: Option<usize>) -> Option<Vec<f32>> {
    let window_hides_some = window.is_some_and(|w| total > w);
    if t == 1 && !window_hides_some {
        return None;
    }
    let mut mask = vec![0f32; t * total];
    for i in 0..t {
        let pos = start + i;
        for (j, m) in mask[i * total..(i + 1) * total].iter_mut().enumerate() {
            let future = j > pos;
            let too_old = window.is_some_and(|w| pos - j.min(pos) >= w);
            if future || too_old {
                *m = f32::NEG_INFINITY;
            }
        }
    }
    Some(mask)
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

/// Stacks per-sequence `[t_i, d]` results back into one `[sum t_i, d]` tensor, without a
/// copy in the common single-sequence case.
pub fn concat_rows(mut parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return Ok(only);
        }
    }
    Ok(Tensor::cat(&parts, 0)?)
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
    fn mask_is_causal() {
        let m = attention_mask(3, 0, 3, None).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(m, vec![0., inf, inf, 0., 0., inf, 0., 0., 0.]);
    }

    #[test]
    fn single_step_needs_no_mask() {
        assert!(attention_mask(1, 10, 11, None).is_none());
        assert!(attention_mask(1, 10, 11, Some(512)).is_none());
    }

    #[test]
    fn sliding_window_hides_old_keys() {
        // query at position 4 with a window of 2 sees keys 3 and 4 only.
        let m = attention_mask(1, 4, 5, Some(2)).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(m, vec![inf, inf, inf, 0., 0.]);
    }

    #[test]
    fn prefill_continuation_sees_cached_prefix() {
        // two new queries at positions 2 and 3 over 4 keys.
        let m = attention_mask(2, 2, 4, None).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(m, vec![0., 0., 0., inf, 0., 0., 0., 0.]);
    }
}
