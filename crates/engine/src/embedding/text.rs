//! Text to token ids as sentence-transformers feeds them to BERT, and padded batches.

use crate::error::{EngineError, Result};
use candle_core::{Device, Tensor};
use std::path::Path;
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

/// The model's `tokenizer.json`, set up to truncate to `max_tokens` and not to pad.
pub struct TextEncoder {
    tokenizer: tokenizers::Tokenizer,
}

impl TextEncoder {
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self> {
        let mut tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| EngineError::ModelFile { path: path.to_path_buf(), reason: e.to_string() })?;
        // all-MiniLM's tokenizer.json pads every input to 128 tokens and truncates there;
        // sentence-transformers overrides both per call (truncate to max_seq_length, pad to
        // the batch), and so does this: padding is added per batch by `pad_batch`.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| EngineError::Tokenizer(format!("setting truncation to {max_tokens} tokens: {e}")))?;
        Ok(Self { tokenizer })
    }

    /// The largest id the tokenizer can produce, plus one.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids with [CLS] and [SEP] (the tokenizer's post-processor adds them; truncation
    /// keeps room for them). The empty string gives just those two.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode_fast(text, true).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Sequences right-padded to the longest one: `ids` `(batch, seq)` u32 and `mask`
/// `(batch, seq)` f32, 1 for a token and 0 for padding.
pub struct Batch {
    pub ids: Tensor,
    pub mask: Tensor,
}

/// The id written into padded positions. Any valid id works, since the mask hides them;
/// 0 is BERT's [PAD].
const PAD_ID: u32 = 0;

pub fn pad_batch(sequences: &[&[u32]]) -> Result<Batch> {
    let seq = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(sequences.len() * seq);
    let mut mask = Vec::with_capacity(sequences.len() * seq);
    for s in sequences {
        ids.extend_from_slice(s);
        ids.resize(ids.len() + seq - s.len(), PAD_ID);
        mask.extend((0..seq).map(|i| if i < s.len() { 1f32 } else { 0. }));
    }
    let shape = (sequences.len(), seq);
    Ok(Batch { ids: Tensor::from_vec(ids, shape, &Device::Cpu)?, mask: Tensor::from_vec(mask, shape, &Device::Cpu)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_right_with_a_mask() {
        let batch = pad_batch(&[&[101, 7, 102], &[101, 102]]).unwrap();
        assert_eq!(batch.ids.to_vec2::<u32>().unwrap(), vec![vec![101, 7, 102], vec![101, 102, 0]]);
        assert_eq!(batch.mask.to_vec2::<f32>().unwrap(), vec![vec![1., 1., 1.], vec![1., 1., 0.]]);
    }
}
