//! Adapters in PEFT's layout, so what luodi trains loads in Python PEFT and what PEFT trains
//! loads in luodi: `adapter_config.json` and `adapter_model.safetensors` with A `[r, in]`,
//! B `[out, r]` under names like `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
//!
//! Llama GGUFs store q and k with their rows permuted (llama.cpp's converter pairs the
//! rotary halves of each head); luodi trains in the GGUF's order, so B's rows of q_proj and
//! k_proj are put back in Hugging Face's order on the way out, and permuted on the way in.

use crate::error::{Result, TrainError};
use crate::model::{Arch, Model, Target};
use crate::tensors::{self, Named};
use std::collections::HashMap;
use std::path::Path;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

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
}

/// Row `h*hd + 2i + s` of a GGUF q/k matrix is row `h*hd + s*hd/2 + i` of Hugging Face's.
fn hf_row(gguf_row: usize, hd: usize) -> usize {
    let (h, j) = (gguf_row / hd, gguf_row % hd);
    h * hd + (j % 2) * (hd / 2) + j / 2
}

fn permuted(t: Target, arch: Arch) -> bool {
    arch == Arch::Llama && matches!(t, Target::Q | Target::K)
}

/// Reorders B's rows between GGUF and Hugging Face order.
fn reorder_rows(b: &[f32], r: usize, hd: usize, to_hf: bool) -> Vec<f32> {
    let mut out = vec![0.0; b.len()];
    for g in 0..b.len() / r {
        let h = hf_row(g, hd);
        let (from, to) = if to_hf { (g, h) } else { (h, g) };
        out[to * r..(to + 1) * r].copy_from_slice(&b[from * r..(from + 1) * r]);
    }
    out
}

pub fn save(dir: &Path, model: &Model, config: &AdapterConfig, metadata: HashMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, format!("cannot create: {e}")))?;
    let mut tensors = Vec::new();
    for (i, block) in model.blocks.iter().enumerate() {
        for t in Target::ALL {
            let l = block.linear(t);
            let Some(lora) = &l.lora else { continue };
            let base = format!("base_model.model.model.layers.{i}.{}", t.peft_path());
            let b = if permuted(t, model.dims.arch) {
                reorder_rows(&lora.b, lora.r, block.shape.head_dim, true)
            } else {
                lora.b.clone()
            };
            tensors.push(Named {
                name: format!("{base}.lora_A.weight"),
                shape: vec![lora.r, l.inp],
                values: lora.a.clone(),
            });
            tensors.push(Named { name: format!("{base}.lora_B.weight"), shape: vec![l.out, lora.r], values: b });
        }
    }
    let mut metadata = metadata;
    metadata.insert("format".into(), "pt".into());
    tensors::write(&dir.join(WEIGHTS_FILE), &tensors, metadata)?;
    let json = serde_json::to_string_pretty(config).expect("adapter config serializes");
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, json + "\n").map_err(|e| TrainError::file(&path, format!("cannot write: {e}")))
}

/// Reads a PEFT adapter directory into `model` (adding LoRA factors where the adapter has
/// them) and returns its configuration and the safetensors metadata.
pub fn load(dir: &Path, model: &mut Model) -> Result<(AdapterConfig, HashMap<String, String>)> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| TrainError::file(&cpath, format!("cannot read: {e}")))?;
    let config: AdapterConfig =
        serde_json::from_str(&text).map_err(|e| TrainError::file(&cpath, format!("not a PEFT adapter config: {e}")))?;
    if config.peft_type != "LORA" {
        return Err(TrainError::file(&cpath, format!("peft_type is `{}`; only LORA adapters load", config.peft_type)));
    }
    if config.use_dora || config.fan_in_fan_out || config.bias != "none" {
        return Err(TrainError::file(&cpath, "DoRA, fan_in_fan_out and trained biases are not supported"));
    }
    let wpath = dir.join(WEIGHTS_FILE);
    let (mut tensors, metadata) = tensors::read(&wpath)?;
    let scale = if config.use_rslora {
        config.lora_alpha / (config.r as f32).sqrt()
    } else {
        config.lora_alpha / config.r as f32
    };
    let arch = model.dims.arch;
    let n_blocks = model.blocks.len();
    let mut found = 0;
    for (i, block) in model.blocks.iter_mut().enumerate() {
        let hd = block.shape.head_dim;
        for t in Target::ALL {
            let base = format!("base_model.model.model.layers.{i}.{}", t.peft_path());
            let (Some(a), Some(b)) =
                (tensors.remove(&format!("{base}.lora_A.weight")), tensors.remove(&format!("{base}.lora_B.weight")))
            else {
                continue;
            };
            let l = block.linear_mut(t);
            let r = a.shape[0];
            if a.shape != [r, l.inp] || b.shape != [l.out, r] {
                return Err(TrainError::file(
                    &wpath,
                    format!(
                        "`{base}`: A is {:?} and B is {:?}; this model needs A [r, {}] and B [{}, r]",
                        a.shape, b.shape, l.inp, l.out
                    ),
                ));
            }
            let b = if permuted(t, arch) { reorder_rows(&b.values, r, hd, false) } else { b.values };
            l.lora = Some(crate::ops::linear::Lora {
                r,
                scale,
                dropout: config.lora_dropout,
                grad_a: vec![0.0; a.values.len()],
                grad_b: vec![0.0; b.len()],
                a: a.values,
                b,
            });
            found += 1;
        }
    }
    if let Some(name) = tensors.keys().next() {
        return Err(TrainError::file(
            &wpath,
            format!("tensor `{name}` matches no layer of this {n_blocks}-layer model"),
        ));
    }
    if found == 0 {
        return Err(TrainError::file(&wpath, "holds no LoRA tensors"));
    }
    Ok((config, metadata))
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
