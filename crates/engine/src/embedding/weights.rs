//! Named tensors out of `model.safetensors`, with errors that name the missing tensor or
//! the wrong shape.
//!
//! The file is read into memory rather than memory-mapped: candle's mmap constructors are
//! `unsafe` (the workspace denies unsafe code), and at 90 MB the copy costs well under a
//! second once at load.

use crate::error::{EngineError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Weights {
    /// For error messages only.
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// "" or "bert.": checkpoints saved from `BertForXxx` heads nest the encoder under `bert`.
    prefix: &'static str,
}

impl Weights {
    pub fn read(path: &Path) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| EngineError::ModelFile {
            path: path.to_path_buf(),
            reason: crate::error::without_backtrace(&e),
        })?;
        Ok(Self::from_tensors(path.to_path_buf(), tensors))
    }

    pub fn from_tensors(path: PathBuf, tensors: HashMap<String, Tensor>) -> Self {
        let nested = !tensors.contains_key("embeddings.word_embeddings.weight")
            && tensors.contains_key("bert.embeddings.word_embeddings.weight");
        Self { path, tensors, prefix: if nested { "bert." } else { "" } }
    }

    /// The tensor `name` (without the `bert.` prefix) as f32, checked to have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self.tensors.get(&full).ok_or_else(|| EngineError::MissingTensor { name: full.clone() })?;
        if tensor.dims() != shape {
            return Err(EngineError::ModelFile {
                path: self.path.clone(),
                reason: format!("tensor `{full}` has shape {:?}, expected {shape:?}", tensor.dims()),
            });
        }
        // Checkpoints are often saved in f16; the CPU kernels are fastest and exact in f32.
        Ok(tensor.to_dtype(DType::F32)?)
    }

    /// A dense layer: `{name}.weight` of shape (out, in) and `{name}.bias` of shape (out).
    pub fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<candle_nn::Linear> {
        let weight = self.get(&format!("{name}.weight"), &[out_features, in_features])?;
        let bias = self.get(&format!("{name}.bias"), &[out_features])?;
        Ok(candle_nn::Linear::new(weight, Some(bias)))
    }

    /// Dense layers of the same input stacked into one: weights concatenated along the
    /// output dimension, biases likewise, so one matmul computes all their outputs side by side.
    pub fn stacked_linear(&self, names: &[String], in_features: usize, out_each: usize) -> Result<candle_nn::Linear> {
        let part = |kind: &str, shape: &[usize]| {
            let parts = names.iter().map(|n| self.get(&format!("{n}.{kind}"), shape)).collect::<Result<Vec<_>>>()?;
            Ok::<_, EngineError>(Tensor::cat(&parts, 0)?)
        };
        Ok(candle_nn::Linear::new(part("weight", &[out_each, in_features])?, Some(part("bias", &[out_each])?)))
    }

    /// A layer norm over `size` features: `{name}.weight` and `{name}.bias`.
    pub fn layer_norm(&self, name: &str, size: usize, eps: f64) -> Result<candle_nn::LayerNorm> {
        let weight = self.get(&format!("{name}.weight"), &[size])?;
        let bias = self.get(&format!("{name}.bias"), &[size])?;
        Ok(candle_nn::LayerNorm::new(weight, bias, eps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(shape: &[usize]) -> Tensor {
        Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let weights = Weights::from_tensors("test".into(), HashMap::from([("a.weight".to_string(), zeros(&[2, 3]))]));
        let err = weights.linear("a", 3, 2).unwrap_err();
        assert!(matches!(&err, EngineError::MissingTensor { name } if name == "a.bias"), "{err}");
        let err = weights.get("a.weight", &[3, 2]).unwrap_err().to_string();
        assert!(err.contains("a.weight") && err.contains("[2, 3]"), "{err}");
    }

    #[test]
    fn nested_bert_prefix_is_found() {
        let weights = Weights::from_tensors(
            "test".into(),
            HashMap::from([
                ("bert.embeddings.word_embeddings.weight".to_string(), zeros(&[4, 2])),
                ("cls.predictions.bias".to_string(), zeros(&[4])),
            ]),
        );
        assert_eq!(weights.get("embeddings.word_embeddings.weight", &[4, 2]).unwrap().dims(), &[4, 2]);
    }
}
