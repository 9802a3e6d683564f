//! Model architectures and loading from GGUF.
//!
//! Models are stateless over a request: `forward` takes a batch of sequences, each with its
//! own new tokens and its own engine-owned [`SequenceKv`], and returns the next-token logits
//! of every sequence. Sequences in one batch may be at different positions.

mod attention;
mod gemma3;
pub mod layers;
mod llama;

use crate::error::{EngineError, Result};
use crate::gguf::Metadata;
use crate::kv_cache::{KvLayout, SequenceKv};
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use layers::TensorSource;
use std::collections::BTreeMap;
use std::path::Path;

/// Gemma 3's fixed layer pattern, for code that rebuilds its blocks (the trainer).
pub use gemma3::{LOCAL_ROPE_BASE, SLIDING_WINDOW_PATTERN};

/// Hyper-parameters read from the GGUF header.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub vocab_size: usize,
    pub sliding_window: Option<usize>,
}

impl ModelConfig {
    pub fn kv_layout(&self) -> KvLayout {
        KvLayout { n_layers: self.n_layers, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim }
    }
}

/// One sequence's share of a forward pass: the tokens to append, and its cache.
pub struct SeqBatch<'a> {
    pub tokens: &'a [u32],
    pub kv: &'a mut SequenceKv,
}

enum Arch {
    Llama(llama::Llama),
    Gemma3(gemma3::Gemma3),
}

/// A loaded model of a supported architecture.
pub struct Model {
    arch: Arch,
}

/// What `luodi models info` shows about a GGUF file, read from its header only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufSummary {
    pub architecture: String,
    pub name: Option<String>,
    pub parameters: u64,
    /// Tensor count per quantization type, e.g. {"Q4_1": 210, "F32": 61}.
    pub tensor_types: BTreeMap<String, usize>,
    pub context_length: Option<usize>,
    pub chat_template: Option<String>,
    pub tokenizer_model: Option<String>,
}

/// Opens a GGUF file and parses its header, with errors that name the file.
pub fn read_header(path: &Path) -> Result<(std::fs::File, Content)> {
    let file_err = |reason: String| EngineError::ModelFile { path: path.to_path_buf(), reason };
    let mut file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
    let content = Content::read(&mut file).map_err(|e| {
        file_err(format!(
            "not a readable GGUF file ({}); it may be truncated or corrupt: download it again (`luodi models fetch NAME --force` for catalog models)",
            crate::error::without_backtrace(&e)
        ))
    })?;
    Ok((file, content))
}

pub fn summarize(content: &Content) -> GgufSummary {
    let meta = Metadata::new(content);
    let architecture = meta.opt_string("general.architecture").unwrap_or("unknown").to_string();
    let mut tensor_types = BTreeMap::new();
    let mut parameters = 0u64;
    for info in content.tensor_infos.values() {
        parameters += info.shape.elem_count() as u64;
        *tensor_types.entry(format!("{:?}", info.ggml_dtype).to_uppercase()).or_insert(0) += 1;
    }
    GgufSummary {
        name: meta.opt_string("general.name").map(str::to_string),
        context_length: meta.opt_usize(&format!("{architecture}.context_length")).ok().flatten(),
        chat_template: meta.opt_string("tokenizer.chat_template").map(str::to_string),
        tokenizer_model: meta.opt_string("tokenizer.ggml.model").map(str::to_string),
        architecture,
        parameters,
        tensor_types,
    }
}

/// The configuration of a GGUF from its header alone (no weights read), for tools that
/// need the shapes but not the serving model (merging an adapter).
pub fn read_config(content: &Content) -> Result<ModelConfig> {
    let meta = Metadata::new(content);
    let mut config = match meta.string("general.architecture")? {
        "llama" => llama::Llama::config_from(&meta)?,
        "gemma3" => gemma3::Gemma3::config_from(&meta)?,
        other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
    };
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| EngineError::MissingTensor { name: "token_embd.weight".into() })?;
    config.vocab_size = embd.shape.dims()[0];
    Ok(config)
}

impl Model {
    /// Builds the model from an already parsed header and the open file.
    pub fn load(path: &Path, file: &mut std::fs::File, content: &Content, device: &Device) -> Result<Self> {
        let meta = Metadata::new(content);
        let arch_name = meta.string("general.architecture")?;
        let mut src = TensorSource { content, file, device };
        let arch = match arch_name {
            "llama" => llama::Llama::load(llama::Llama::config_from(&meta)?, &mut src).map(Arch::Llama),
            "gemma3" => gemma3::Gemma3::load(gemma3::Gemma3::config_from(&meta)?, &mut src).map(Arch::Gemma3),
            other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
        };
        Ok(Self { arch: arch.map_truncation(path)? })
    }

    /// Attaches (or with `None` removes) an adapter applied on top of the base weights.
    pub fn set_lora(&mut self, lora: Option<crate::lora::Lora>) {
        match &mut self.arch {
            Arch::Llama(m) => m.lora = lora,
            Arch::Gemma3(m) => m.lora = lora,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match &self.arch {
            Arch::Llama(m) => m.config(),
            Arch::Gemma3(m) => m.config(),
        }
    }

    /// Appends each sequence's tokens to its cache and returns `[batch.len(), vocab]` logits
    /// for the position after each sequence's last token.
    pub fn forward(&self, batch: &mut [SeqBatch<'_>]) -> Result<Tensor> {
        let ctx = self.config().context_length;
        for seq in batch.iter() {
            let needed = seq.kv.len() + seq.tokens.len();
            if needed > ctx || seq.tokens.is_empty() {
                return Err(EngineError::ContextOverflow { prompt_tokens: needed, max_tokens: 0, context_length: ctx });
            }
        }
        for seq in batch.iter_mut() {
            // The batch scheduler sizes caches exactly; this only grows caches of callers
            // that do not (single-stream generation).
            seq.kv.reserve(seq.tokens.len())?;
        }
        match &self.arch {
            Arch::Llama(m) => m.forward(batch),
            Arch::Gemma3(m) => m.forward(batch),
        }
    }
}

/// Turns a tensor read failure during loading into a file error: a GGUF whose header parses
/// but whose data is cut short fails here.
trait MapTruncation<T> {
    fn map_truncation(self, path: &Path) -> Result<T>;
}

impl<T> MapTruncation<T> for Result<T> {
    fn map_truncation(self, path: &Path) -> Result<T> {
        self.map_err(|e| match e {
            EngineError::Tensor(inner) => EngineError::ModelFile {
                path: path.to_path_buf(),
                reason: format!(
                    "tensor data could not be read ({}); the file may be truncated or corrupt: download it again (`luodi models fetch NAME --force` for catalog models)",
                    crate::error::without_backtrace(&inner)
                ),
            },
            other => other,
        })
    }
}
