//! Adapters in PEFT's layout, so what luodi trains loads in Python PEFT and what PEFT trains
//! loads in luodi. The format itself (names, config, the llama q/k row order) is the
//! engine's `lora` module, which also applies adapters when generating; this side writes
//! them from, and reads them into, the trainable model.

use crate::error::{Result, TrainError};
use crate::model::{Model, Target};
use crate::tensors::{self, Named};
use luodi_engine::lora::{peft_path, permuted, read_peft, reorder_rows};
pub use luodi_engine::lora::{AdapterConfig, CONFIG_FILE, WEIGHTS_FILE};
use luodi_engine::model::ModelConfig;
use std::collections::HashMap;
use std::path::Path;

fn index(t: Target) -> usize {
    Target::ALL.iter().position(|&x| x == t).expect("every target is in ALL")
}

pub fn save(
    dir: &Path,
    model: &Model,
    architecture: &str,
    config: &AdapterConfig,
    metadata: HashMap<String, String>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, format!("cannot create: {e}")))?;
    let mut tensors = Vec::new();
    for (i, block) in model.blocks.iter().enumerate() {
        for t in Target::ALL {
            let l = block.linear(t);
            let Some(lora) = &l.lora else { continue };
            let base = format!("base_model.model.model.layers.{i}.{}", peft_path(index(t)));
            let b = if permuted(architecture, index(t)) {
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
pub fn load(dir: &Path, model: &mut Model, config: &ModelConfig) -> Result<(AdapterConfig, HashMap<String, String>)> {
    let adapter = read_peft(dir, config)?;
    for (block, layer) in model.blocks.iter_mut().zip(adapter.layers) {
        for (t, factors) in Target::ALL.into_iter().zip(layer) {
            let Some(f) = factors else { continue };
            let l = block.linear_mut(t);
            l.lora = Some(crate::ops::linear::Lora {
                r: f.r,
                scale: f.scale,
                dropout: adapter.config.lora_dropout,
                grad_a: vec![0.0; f.a.len()],
                grad_b: vec![0.0; f.b.len()],
                a: f.a,
                b: f.b,
            });
        }
    }
    Ok((adapter.config, adapter.metadata))
}
