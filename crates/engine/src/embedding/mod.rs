//! Sentence embeddings from a sentence-transformers BERT model (all-MiniLM-L6-v2): the
//! model directory's `tokenizer.json`, a BERT encoder (`bert.rs`), mean pooling over the
//! real tokens and L2 normalization (`pooling.rs`), matching sentence-transformers'
//! `encode(..., normalize_embeddings)` pipeline.
//!
//! The model directory holds `config.json`, `model.safetensors`, `tokenizer.json` and
//! optionally `sentence_bert_config.json` (the truncation length; `config.rs`).

mod bert;
mod config;
mod pooling;
mod text;
mod weights;

use crate::error::{EngineError, Result};
use bert::Bert;
use config::BertConfig;
use std::path::Path;
use text::TextEncoder;
use weights::Weights;

/// Inputs encoded together. sentence-transformers' default; larger batches gain little on
/// a CPU and pad more.
const BATCH_SIZE: usize = 32;

/// A loaded embedding model. Cheap to share: `Send + Sync`, `embed` takes `&self`.
pub struct EmbeddingModel {
    bert: Bert,
    encoder: TextEncoder,
    dimensions: usize,
    max_tokens: usize,
}

/// One vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// L2-normalized, `dimensions()` long each.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens each input was encoded to, [CLS] and [SEP] included, after truncation: an
    /// input that was cut reports `max_tokens()`.
    pub token_counts: Vec<usize>,
}

impl EmbeddingModel {
    /// Loads config.json, model.safetensors and tokenizer.json (and sentence_bert_config.json
    /// when present) from `dir`. Errors name the file, key or tensor at fault.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EngineError::ModelFile { path, reason: "file not found".to_string() })
            }
        };
        let config = BertConfig::read(&file("config.json")?)?;
        let max_tokens = config::max_tokens(dir, &config)?;
        let tokenizer_path = file("tokenizer.json")?;
        let encoder = TextEncoder::load(&tokenizer_path, max_tokens)?;
        if encoder.vocab_size() > config.vocab_size {
            return Err(EngineError::ModelFile {
                path: tokenizer_path,
                reason: format!(
                    "the tokenizer has {} tokens but the model only {} (config.json vocab_size)",
                    encoder.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let bert = Bert::new(&config, &Weights::read(&file("model.safetensors")?)?)?;
        Ok(Self { bert, encoder, dimensions: config.hidden_size, max_tokens })
    }

    /// Length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens (with [CLS] and [SEP]) an input is truncated to.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// L2-normalized mean-pooled embeddings, one per input, as sentence-transformers
    /// computes them. Longer inputs are truncated to `max_tokens()`, as there.
    pub fn embed(&self, inputs: &[&str]) -> Result<Embeddings> {
        let ids = inputs.iter().map(|text| self.encoder.encode(text)).collect::<Result<Vec<_>>>()?;
        // Longest first, batched in that order (as sentence-transformers does), so each
        // batch pads little; results go back to input order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut vectors = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let sequences: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(&sequences)?) {
                vectors[i] = vector;
            }
        }
        Ok(Embeddings { vectors, token_counts: ids.iter().map(Vec::len).collect() })
    }

    fn embed_batch(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let batch = text::pad_batch(sequences)?;
        let hidden = self.bert.forward(&batch.ids, &batch.mask)?;
        let pooled = pooling::mean_pool(&hidden, &batch.mask)?;
        Ok(pooling::l2_normalize(&pooled)?.to_vec2()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EmbeddingModel>();
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = EmbeddingModel::load(dir.path()).err().expect("an empty directory must not load");
        assert!(matches!(&err, EngineError::ModelFile { path, .. } if path.ends_with("config.json")), "{err}");
    }
}
