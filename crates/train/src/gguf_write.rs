//! Writes a GGUF shaped like a base GGUF: the base's metadata (tokenizer, chat template,
//! architecture) with some keys added, and its tensors in their order, each copied byte for
//! byte unless the caller replaces it. `luodi train merge` replaces the projections an adapter
//! touched; full fine-tuning replaces every trained tensor. Written aside and renamed, so a
//! failure never leaves a truncated model where a good one is expected.

use crate::error::{Result, TrainError};
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;

/// f32 values in row-major order of `shape`, stored as `ty` (1-D tensors, the norms, stay f32
/// as GGUF converters keep them).
pub fn quantize(values: &[f32], shape: &[usize], ty: GgmlDType) -> Result<QTensor> {
    let t = Tensor::from_slice(values, shape, &Device::Cpu)?;
    let ty = if shape.len() < 2 { GgmlDType::F32 } else { ty };
    Ok(QTensor::quantize(&t, ty)?)
}

/// How many tensors were replaced and how many copied.
pub struct Written {
    pub replaced: usize,
    pub copied: usize,
}

/// Copies the base GGUF (`header`, as `luodi_engine::model::read_header` returns it: the
/// callers have read it already for its shapes) to `out`, asking `replace(name, tensor)` for
/// each tensor first; keys of `extra` are added to (or replace) the base's metadata.
pub fn write_like(
    header: (std::fs::File, Content),
    out: &Path,
    out_flag: &'static str,
    extra: Vec<(String, Value)>,
    mut replace: impl FnMut(&str, &QTensor) -> Result<Option<QTensor>>,
) -> Result<Written> {
    let (mut file, content) = header;
    let device = Device::Cpu;
    let mut names: Vec<(&String, u64)> = content.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|&(_, offset)| offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut written = Written { replaced: 0, copied: 0 };
    for (name, _) in names {
        let q = content.tensor(&mut file, name, &device)?;
        match replace(name, &q)? {
            Some(new) => {
                tensors.push((name.clone(), new));
                written.replaced += 1;
            }
            None => {
                tensors.push((name.clone(), q));
                written.copied += 1;
            }
        }
    }
    let mut metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.extend(extra);
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = out.with_extension("gguf.partial");
    let mut w =
        std::fs::File::create(&tmp).map_err(|e| TrainError::flag(out_flag, format!("{}: {e}", tmp.display())))?;
    gguf_file::write(&mut w, &meta_refs, &tensor_refs)?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| TrainError::flag(out_flag, format!("{}: {e}", out.display())))?;
    Ok(written)
}
