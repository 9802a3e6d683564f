//! `luodi train merge`: folds a LoRA adapter into its base GGUF, `W' = W + scale * B A`,
//! computed over exactly the dequantized weights the adapter was trained against, then
//! stored as `--type` (f16, q8_0 or q4_1). Tensors the adapter does not touch are copied
//! byte for byte. Re-quantizing the merged projections can cost quality, so `--eval_file`
//! scores the adapter and the merged file on the same data and reports both.

use crate::error::{Result, TrainError};
use crate::model::{Model, Target};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use luodi_engine::lora::read_peft;
use luodi_engine::EngineError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F16,
    Q8_0,
    Q4_1,
}

impl std::str::FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f16" => Ok(OutType::F16),
            "q8_0" => Ok(OutType::Q8_0),
            "q4_1" => Ok(OutType::Q4_1),
            other => Err(format!("`{other}` is not a merge type; expected f16, q8_0 or q4_1")),
        }
    }
}

impl OutType {
    fn ggml(self) -> GgmlDType {
        match self {
            OutType::F16 => GgmlDType::F16,
            OutType::Q8_0 => GgmlDType::Q8_0,
            OutType::Q4_1 => GgmlDType::Q4_1,
        }
    }
}

pub struct MergeReport {
    pub merged_tensors: usize,
    pub copied_tensors: usize,
    pub out: PathBuf,
}

fn tensor_err(e: candle_core::Error) -> TrainError {
    EngineError::from(e).into()
}

pub fn merge(base: &Path, adapter_dir: &Path, out: &Path, out_type: OutType) -> Result<MergeReport> {
    // The header alone gives the shapes; the serving model is not needed to merge.
    let (mut file, content) = luodi_engine::model::read_header(base)?;
    let config = luodi_engine::model::read_config(&content)?;
    let adapter = read_peft(adapter_dir, &config)?;
    let base_sha = crate::trainer::sha256_file(base)?;
    if let Some(want) = adapter.metadata.get("luodi.base_sha256") {
        let have = &base_sha;
        if have != want {
            return Err(TrainError::flag(
                "adapter",
                format!("was trained on a base with sha256 {want}; {} has sha256 {have}", base.display()),
            ));
        }
    }
    let scale = adapter.config.scale() as f64;
    let device = Device::Cpu;
    let mut names: Vec<(&String, u64)> = content.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|&(_, offset)| offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let (mut merged, mut copied) = (0, 0);
    for (name, _) in names {
        let q = content.tensor(&mut file, name, &device).map_err(tensor_err)?;
        let factors = name.strip_prefix("blk.").and_then(|rest| {
            let (layer, tail) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let t = Target::ALL.iter().position(|t| tail == format!("{}.weight", t.gguf_name()))?;
            adapter.layers.get(layer)?[t].as_ref()
        });
        let Some(f) = factors else {
            tensors.push((name.clone(), q));
            copied += 1;
            continue;
        };
        let w = q.dequantize(&device).map_err(tensor_err)?;
        let (out_rows, in_cols) = w.dims2().map_err(tensor_err)?;
        let a = Tensor::from_slice(&f.a, (f.r, in_cols), &device).map_err(tensor_err)?;
        let b = Tensor::from_slice(&f.b, (out_rows, f.r), &device).map_err(tensor_err)?;
        let delta = (b.matmul(&a).map_err(tensor_err)? * scale).map_err(tensor_err)?;
        let w = (w + delta).map_err(tensor_err)?;
        tensors.push((name.clone(), QTensor::quantize(&w, out_type.ggml()).map_err(tensor_err)?));
        merged += 1;
    }
    let mut metadata: Vec<(String, Value)> = content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.retain(|(k, _)| !k.starts_with("luodi.merge."));
    metadata.push(("luodi.merge.adapter".into(), Value::String(adapter_dir.display().to_string())));
    metadata.push(("luodi.merge.base_sha256".into(), Value::String(base_sha)));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = out.with_extension("gguf.partial");
    let mut w = std::fs::File::create(&tmp).map_err(|e| TrainError::flag("out", format!("{}: {e}", tmp.display())))?;
    gguf_file::write(&mut w, &meta_refs, &tensor_refs).map_err(tensor_err)?;
    drop(w);
    // Written aside and renamed, so a failed merge never leaves a truncated model behind.
    std::fs::rename(&tmp, out).map_err(|e| TrainError::flag("out", format!("{}: {e}", out.display())))?;
    Ok(MergeReport { merged_tensors: merged, copied_tensors: copied, out: out.to_path_buf() })
}

/// Mean loss per scored token of `base` with the adapter applied and of the merged file, on
/// the records of `eval_file` (the trainer's formats).
pub fn compare(base: &Path, adapter_dir: &Path, merged: &Path, eval_file: &Path, max_len: usize) -> Result<(f64, f64)> {
    let engine = luodi_engine::Engine::load(base)?;
    let (objective, records) = crate::data::read_records(eval_file)?;
    let seqs =
        crate::data::prepare(objective, &records, engine.tokenizer(), engine.chat_template(), max_len)?.sequences;
    let config = engine.config().clone();
    drop(engine);
    let mut adapted = Model::load(base, &config)?;
    crate::peft::load(adapter_dir, &mut adapted, &config)?;
    let with_adapter = crate::trainer::evaluate(&mut adapted, &seqs, 4);
    drop(adapted);
    let mut m = Model::load(merged, &config)?;
    Ok((with_adapter, crate::trainer::evaluate(&mut m, &seqs, 4)))
}
