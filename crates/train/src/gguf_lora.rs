//! The adapter as a GGUF LoRA, the file llama.cpp's `--lora` loads (what its
//! `convert_lora_to_gguf.py` writes): `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, and per adapted projection `blk.N.<tensor>.weight.lora_a` (A, `[r, in]`)
//! and `.lora_b` (B, `[out, r]`), in f32. luodi trains in the GGUF's own row order, so B of
//! a llama q/k projection is already permuted as llama.cpp expects.

use crate::error::{Result, TrainError};
use crate::model::{Model, Target};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use std::path::Path;

pub const FILE: &str = "adapter.gguf";

fn err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::file(path, format!("cannot write: {e}"))
}

pub fn save(path: &Path, model: &Model, architecture: &str, alpha: f32, name: &str) -> Result<()> {
    let device = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (i, block) in model.blocks.iter().enumerate() {
        for t in Target::ALL {
            let l = block.linear(t);
            let Some(lora) = &l.lora else { continue };
            let base = format!("blk.{i}.{}.weight", t.gguf_name());
            let a = Tensor::from_slice(&lora.a, (lora.r, l.inp), &device).map_err(|e| err(path, e))?;
            let b = Tensor::from_slice(&lora.b, (l.out, lora.r), &device).map_err(|e| err(path, e))?;
            tensors.push((
                format!("{base}.lora_a"),
                QTensor::quantize(&a, candle_core::quantized::GgmlDType::F32).map_err(|e| err(path, e))?,
            ));
            tensors.push((
                format!("{base}.lora_b"),
                QTensor::quantize(&b, candle_core::quantized::GgmlDType::F32).map_err(|e| err(path, e))?,
            ));
        }
    }
    let metadata = [
        ("general.architecture", Value::String(architecture.to_string())),
        ("general.type", Value::String("adapter".into())),
        ("general.name", Value::String(name.to_string())),
        ("adapter.type", Value::String("lora".into())),
        ("adapter.lora.alpha", Value::F32(alpha)),
    ];
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| err(path, e))?;
    gguf_file::write(&mut f, &meta, &refs).map_err(|e| err(path, e))
}
