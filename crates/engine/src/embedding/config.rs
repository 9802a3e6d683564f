//! The two configuration files of a sentence-transformers BERT model directory:
//! `config.json` (the HF BertModel shape) and the optional `sentence_bert_config.json`
//! (the sequence length sentence-transformers truncates to).

use crate::error::{EngineError, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;

/// The subset of HF `BertConfig` the encoder needs. Keys without a serde default are
/// required: a config that lacks one is refused with the key's name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: Activation,
    /// Only absolute positions are implemented; relative ones would silently give wrong
    /// vectors, so anything else is refused at load.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_hidden_act() -> Activation {
    Activation::Gelu
}

fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

/// The feed-forward activation. HF's "gelu" is the exact erf form; the tanh approximation
/// differs in the fourth decimal, enough to miss sentence-transformers' vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", rename = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

impl BertConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|reason| EngineError::ModelFile { path: path.to_path_buf(), reason })?;
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn validate(&self) -> Result<(), String> {
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.max_position_embeddings < 2 {
            return Err("max_position_embeddings must leave room for [CLS] and [SEP]".to_string());
        }
        Ok(())
    }
}

/// `sentence_bert_config.json`: sentence-transformers' own truncation length.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// The number of tokens (with [CLS] and [SEP]) an input is truncated to: sentence-
/// transformers' `max_seq_length` when the directory has `sentence_bert_config.json`,
/// otherwise BERT's usual 512, never more than the model has positions for.
pub fn max_tokens(dir: &Path, config: &BertConfig) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    let wanted = if path.is_file() { read_json::<SentenceBertConfig>(&path)?.max_seq_length } else { 512 };
    if wanted < 2 {
        return Err(EngineError::ModelFile { path, reason: "max_seq_length must be at least 2".to_string() });
    }
    Ok(wanted.min(config.max_position_embeddings))
}

/// Reads and parses a JSON file; serde's message names a missing key or a wrong type.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let file_error = |reason: String| EngineError::ModelFile { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 384,
        "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
        "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522}"#;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_minilm_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = BertConfig::read(&write(dir.path(), "config.json", MINILM)).unwrap();
        assert_eq!((config.hidden_size, config.head_dim(), config.num_hidden_layers), (384, 32, 6));
        assert_eq!(config.hidden_act, Activation::Gelu);
    }

    #[test]
    fn missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.json", &MINILM.replace("\"hidden_size\": 384,", ""));
        let err = BertConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("hidden_size"), "{err}");
    }

    #[test]
    fn relative_positions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.json", &MINILM.replace("\"absolute\"", "\"relative_key\""));
        let err = BertConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("relative_key"), "{err}");
    }

    #[test]
    fn max_tokens_prefers_sentence_bert_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = BertConfig::read(&write(dir.path(), "config.json", MINILM)).unwrap();
        assert_eq!(max_tokens(dir.path(), &config).unwrap(), 512);
        write(dir.path(), "sentence_bert_config.json", r#"{"max_seq_length": 256, "do_lower_case": false}"#);
        assert_eq!(max_tokens(dir.path(), &config).unwrap(), 256);
        write(dir.path(), "sentence_bert_config.json", r#"{"max_seq_length": 4096}"#);
        assert_eq!(max_tokens(dir.path(), &config).unwrap(), 512, "capped at the position table");
    }
}
