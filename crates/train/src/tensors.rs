//! Named f32 tensors in and out of safetensors files (adapters, optimizer state, weights).
//! Files written by PyTorch may hold f16 or bf16; those are widened on reading by the
//! engine's `lora::read_f32`, which reads adapters the same way.

use crate::error::{Result, TrainError};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct Named {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

pub fn write(path: &Path, tensors: &[Named], metadata: HashMap<String, String>) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| TrainError::file(path, e))?;
        views.push((t.name.clone(), view));
    }
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| TrainError::file(path, format!("cannot write: {e}")))
}

/// Every tensor of the file by name, and the file's metadata.
pub fn read(path: &Path) -> Result<(BTreeMap<String, Named>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::file(path, format!("cannot read: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| TrainError::file(path, format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| TrainError::file(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let values = luodi_engine::lora::read_f32(path, &name, &view)?;
        out.insert(name.clone(), Named { name, shape: view.shape().to_vec(), values });
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
