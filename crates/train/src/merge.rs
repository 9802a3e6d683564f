//! `luodi train merge`: folds a LoRA adapter into its base GGUF, `W' = W + scale * B A`,
//! computed over exactly the dequantized weights the adapter was trained against, then
//! stored as `--type` (f16, q8_0 or q4_1). Tensors the adapter does not touch are copied
//! byte for byte. Re-quantizing the merged projections can cost quality, so `--eval_file`
//! scores the adapter and the merged file on the same data and reports both.

use crate::error::{Result, TrainError};
use crate::gguf_write::write_like;
use crate::model::{Model, Target};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use luodi_engine::lora::read_peft;
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

pub fn merge(base: &Path, adapter_dir: &Path, out: &Path, out_type: OutType) -> Result<MergeReport> {
    // The header alone gives the shapes; the serving model is not needed to merge.
    let header = luodi_engine::model::read_header(base)?;
    let config = luodi_engine::model::read_config(&header.1)?;
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
    let extra = vec![
        ("luodi.merge.adapter".to_string(), Value::String(adapter_dir.display().to_string())),
        ("luodi.merge.base_sha256".to_string(), Value::String(base_sha)),
    ];
    let device = Device::Cpu;
    let written = write_like(header, out, "out", extra, |name, q| {
        let factors = name.strip_prefix("blk.").and_then(|rest| {
            let (layer, tail) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let t = Target::ALL.iter().position(|t| tail == format!("{}.weight", t.gguf_name()))?;
            adapter.layers.get(layer)?[t].as_ref()
        });
        let Some(f) = factors else { return Ok(None) };
        let w = q.dequantize(&device)?;
        let (out_rows, in_cols) = w.dims2()?;
        let a = Tensor::from_slice(&f.a, (f.r, in_cols), &device)?;
        let b = Tensor::from_slice(&f.b, (out_rows, f.r), &device)?;
        let delta = (b.matmul(&a)? * f.scale as f64)?;
        let w = (w + delta)?;
        Ok(Some(QTensor::quantize(&w, out_type.ggml())?))
    })?;
    Ok(MergeReport { merged_tensors: written.replaced, copied_tensors: written.copied, out: out.to_path_buf() })
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
