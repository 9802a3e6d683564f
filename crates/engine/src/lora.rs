//! LoRA adapters applied at inference: `y = x W^T + scale * (x A^T) B^T` on the projections
//! an adapter targets, over the unchanged (quantized) base weights, so trying an adapter
//! never re-quantizes anything.
//!
//! Adapters are read in PEFT's layout (`adapter_config.json` + `adapter_model.safetensors`,
//! A `[r, in]`, B `[out, r]`, names like `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
//! Llama GGUFs store q and k with their rows permuted (llama.cpp's converter pairs the
//! rotary halves of each head), so B's rows of q_proj and k_proj are permuted the same way
//! on reading, and put back on writing (`hf_row`).

use crate::error::{EngineError, Result};
use crate::model::ModelConfig;
use candle_core::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The projections of a block, in the order adapters index them, by PEFT's module names.
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// PEFT's module path of target `t` inside a block (`self_attn.q_proj`, `mlp.down_proj`).
pub fn peft_path(t: usize) -> String {
    let group = if t >= 4 { "mlp" } else { "self_attn" };
    format!("{group}.{}", TARGETS[t])
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub task_type: String,
    pub base_model_name_or_path: String,
    pub r: usize,
    pub lora_alpha: f32,
    pub lora_dropout: f32,
    pub target_modules: Vec<String>,
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    /// Per-module ranks that differ from `r` (PEFT's `rank_pattern`): the rank of each
    /// factor is read from its tensors, and its scale follows it.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alphas (PEFT's `alpha_pattern`); refused when not empty.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f32>,
}

impl AdapterConfig {
    /// PEFT's scaling of a factor pair of rank `r`: `alpha / r`, or `alpha / sqrt(r)` (rsLoRA).
    pub fn scale_for(&self, r: usize) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (r as f32).sqrt()
        } else {
            self.lora_alpha / r as f32
        }
    }
}

/// Row `h*hd + 2i + s` of a llama GGUF's q/k matrix is row `h*hd + s*hd/2 + i` of Hugging Face's.
pub fn hf_row(gguf_row: usize, head_dim: usize) -> usize {
    let (h, j) = (gguf_row / head_dim, gguf_row % head_dim);
    h * head_dim + (j % 2) * (head_dim / 2) + j / 2
}

/// Reorders the rows (each `r` wide) of B between GGUF and Hugging Face order.
pub fn reorder_rows(b: &[f32], r: usize, head_dim: usize, to_hf: bool) -> Vec<f32> {
    let mut out = vec![0.0; b.len()];
    for g in 0..b.len() / r {
        let h = hf_row(g, head_dim);
        let (from, to) = if to_hf { (g, h) } else { (h, g) };
        out[to * r..(to + 1) * r].copy_from_slice(&b[from * r..(from + 1) * r]);
    }
    out
}

/// Whether target `t` of this architecture has the permuted row order.
pub fn permuted(architecture: &str, t: usize) -> bool {
    architecture == "llama" && t < 2
}

/// One adapted projection, in the GGUF's row order.
#[derive(Debug, Clone)]
pub struct LoraFactors {
    pub r: usize,
    /// What `B A x` is multiplied by, from the config and this pair's own rank.
    pub scale: f32,
    /// `[r, in]`
    pub a: Vec<f32>,
    /// `[out, r]`
    pub b: Vec<f32>,
}

/// An adapter read from disk: factors per block and target, the config and file metadata.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    pub config: AdapterConfig,
    pub metadata: HashMap<String, String>,
    /// `layers[i][t]`
    pub layers: Vec<[Option<LoraFactors>; 7]>,
}

fn adapter_err(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Adapter { path: path.to_path_buf(), reason: reason.into() }
}

/// A safetensors tensor as f32 (files written by PyTorch may hold f16 or bf16).
pub fn read_f32(path: &Path, name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(adapter_err(path, format!("tensor `{name}` is {other:?}; expected F32, F16 or BF16"))),
    })
}

/// Reads a PEFT LoRA directory for a model of `config`, checking every shape against it.
pub fn read_peft(dir: &Path, config: &ModelConfig) -> Result<PeftAdapter> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| adapter_err(&cpath, format!("cannot read: {e}")))?;
    let cfg: AdapterConfig =
        serde_json::from_str(&text).map_err(|e| adapter_err(&cpath, format!("not a PEFT adapter config: {e}")))?;
    if cfg.peft_type != "LORA" {
        return Err(adapter_err(&cpath, format!("peft_type is `{}`; only LORA adapters load", cfg.peft_type)));
    }
    if cfg.use_dora || cfg.fan_in_fan_out || cfg.bias != "none" {
        return Err(adapter_err(&cpath, "DoRA, fan_in_fan_out and trained biases are not supported"));
    }
    if !cfg.alpha_pattern.is_empty() {
        return Err(adapter_err(&cpath, "alpha_pattern (a different lora_alpha per module) is not supported"));
    }
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| adapter_err(&wpath, format!("cannot read: {e}")))?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| adapter_err(&wpath, format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| adapter_err(&wpath, format!("not a safetensors file: {e}")))?;
    let mut tensors: BTreeMap<String, safetensors::tensor::TensorView<'_>> = st.tensors().into_iter().collect();
    let (hd, d) = (config.head_dim, config.hidden);
    let (qw, kw) = (config.n_heads * hd, config.n_kv_heads * hd);
    // (out, in) of each target.
    let dims = [(qw, d), (kw, d), (kw, d), (d, qw), (config.ffn, d), (config.ffn, d), (d, config.ffn)];
    let mut layers = Vec::with_capacity(config.n_layers);
    let mut found = 0;
    for i in 0..config.n_layers {
        let mut layer: [Option<LoraFactors>; 7] = Default::default();
        for (t, slot) in layer.iter_mut().enumerate() {
            let base = format!("base_model.model.model.layers.{i}.{}", peft_path(t));
            let (an, bn) = (format!("{base}.lora_A.weight"), format!("{base}.lora_B.weight"));
            let (Some(a), Some(b)) = (tensors.remove(&an), tensors.remove(&bn)) else { continue };
            let (out, inp) = dims[t];
            let r = a.shape().first().copied().unwrap_or(0);
            if r == 0 || a.shape() != [r, inp] || b.shape() != [out, r] {
                return Err(adapter_err(
                    &wpath,
                    format!(
                        "`{base}`: A is {:?} and B is {:?}; this model needs A [r, {inp}] and B [{out}, r]",
                        a.shape(),
                        b.shape()
                    ),
                ));
            }
            let a = read_f32(&wpath, &an, &a)?;
            let mut b = read_f32(&wpath, &bn, &b)?;
            if permuted(&config.architecture, t) {
                b = reorder_rows(&b, r, hd, false);
            }
            *slot = Some(LoraFactors { r, scale: cfg.scale_for(r), a, b });
            found += 1;
        }
        layers.push(layer);
    }
    if let Some(name) = tensors.keys().next() {
        return Err(adapter_err(
            &wpath,
            format!("tensor `{name}` matches no projection of this {}-layer model", config.n_layers),
        ));
    }
    if found == 0 {
        return Err(adapter_err(&wpath, "holds no LoRA tensors"));
    }
    Ok(PeftAdapter { config: cfg, metadata: meta.metadata().clone().unwrap_or_default(), layers })
}

/// One adapted projection as tensors, ready for the forward pass.
pub struct LoraLinear {
    a_t: Tensor,
    b_t: Tensor,
    scale: f64,
}

impl LoraLinear {
    /// `y + scale * (x A^T) B^T`.
    pub fn add_to(&self, y: Tensor, x: &Tensor) -> Result<Tensor> {
        let delta = (x.matmul(&self.a_t)?.matmul(&self.b_t)? * self.scale)?;
        Ok((y + delta)?)
    }
}

/// An adapter attached to a model: per block, per target.
pub struct Lora {
    layers: Vec<[Option<LoraLinear>; 7]>,
}

impl Lora {
    pub fn new(adapter: &PeftAdapter, device: &Device) -> Result<Self> {
        let mut layers = Vec::with_capacity(adapter.layers.len());
        for layer in &adapter.layers {
            let mut out: [Option<LoraLinear>; 7] = Default::default();
            for (slot, f) in out.iter_mut().zip(layer) {
                if let Some(f) = f {
                    let inp = f.a.len() / f.r;
                    let a = Tensor::from_slice(&f.a, (f.r, inp), device)?;
                    let b = Tensor::from_slice(&f.b, (f.b.len() / f.r, f.r), device)?;
                    *slot = Some(LoraLinear {
                        a_t: a.t()?.contiguous()?,
                        b_t: b.t()?.contiguous()?,
                        scale: f.scale as f64,
                    });
                }
            }
            layers.push(out);
        }
        Ok(Self { layers })
    }

    /// Adds target `t`'s delta of block `layer` to `y` (a no-op where nothing is adapted).
    pub fn apply(lora: Option<&Lora>, layer: usize, t: usize, y: Tensor, x: &Tensor) -> Result<Tensor> {
        match lora.and_then(|l| l.layers.get(layer)).and_then(|l| l[t].as_ref()) {
            Some(l) => l.add_to(y, x),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_order_round_trips_and_matches_the_converters_permutation() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2): GGUF row (h, i, s) holds
        // HF row (h, s, i). With hd 4: GGUF rows 0..4 hold HF rows 0, 2, 1, 3.
        assert_eq!((0..8).map(|g| hf_row(g, 4)).collect::<Vec<_>>(), [0, 2, 1, 3, 4, 6, 5, 7]);
        let b: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let there = reorder_rows(&b, 2, 4, true);
        assert_eq!(reorder_rows(&there, 2, 4, false), b);
        assert_eq!(&there[2..4], &b[4..6], "GGUF row 2 is HF row 1");
    }
}
