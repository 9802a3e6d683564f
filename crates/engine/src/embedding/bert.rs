//! A BERT encoder (HF `BertModel` without the pooler) on candle's layers: token, position
//! and segment embeddings, then post-norm transformer layers with bidirectional attention
//! over a padding mask.
//!
//! Hidden states travel as a `(batch * seq, hidden)` matrix so every dense layer is one
//! plain matmul; only attention looks at them per sequence and head.

use super::config::{Activation, BertConfig};
use super::weights::Weights;
use crate::error::Result;
use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, Linear};

pub struct Bert {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    /// Row 0 of the segment table: sentence embeddings always encode a single segment.
    token_type_embedding: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    activation: Activation,
}

struct Layer {
    /// Query, key and value projections stacked into one (3 * hidden, hidden) matrix, so
    /// the layer reads its input once for all three.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Bert {
    pub fn new(config: &BertConfig, weights: &Weights) -> Result<Self> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let token_types = weights.get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(config, weights, &format!("encoder.layer.{i}")))
            .collect::<Result<_>>()?;
        Ok(Self {
            word_embeddings: weights.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position_embeddings: weights
                .get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?,
            token_type_embedding: token_types.get(0)?,
            embedding_norm: weights.layer_norm("embeddings.LayerNorm", h, eps)?,
            layers,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            activation: config.hidden_act,
        })
    }

    /// Final hidden states, `(batch, seq, hidden)`, for token ids `(batch, seq)` (u32) and
    /// `mask` `(batch, seq)` (f32, 1 for a token, 0 for padding). Padded positions get
    /// states too; they are meaningless and must be masked out by the caller.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let mut x = self.embed(ids)?;
        // Additive attention bias over keys, (batch, 1, 1, seq): 0 for tokens, f32::MIN for
        // padding. Its exp underflows to exactly 0, so padding has no weight at all and a
        // batched input gives its single-input result; every row keeps its [CLS] unmasked,
        // so no softmax row is all padding.
        let bias = ((mask - 1.0)? * f64::from(f32::MAX))?.reshape((batch, 1, 1, seq))?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, (batch, seq, self.heads, self.head_dim), self.activation)?;
        }
        Ok(x.reshape((batch, seq, ()))?)
    }

    /// `(batch * seq, hidden)`: word + position + segment embeddings, layer-normed.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let words = self.word_embeddings.index_select(&ids.flatten_all()?, 0)?;
        let hidden = words.dim(1)?;
        // Right padding: every row starts at position 0, so one slice of the table serves all.
        let positions = self.position_embeddings.narrow(0, 0, seq)?.broadcast_add(&self.token_type_embedding)?;
        let x = words.reshape((batch, seq, hidden))?.broadcast_add(&positions)?;
        Ok(self.embedding_norm.forward(&x.reshape((batch * seq, hidden))?)?)
    }
}

impl Layer {
    fn new(config: &BertConfig, weights: &Weights, prefix: &str) -> Result<Self> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let qkv = ["query", "key", "value"].map(|name| format!("{prefix}.attention.self.{name}"));
        Ok(Self {
            qkv: weights.stacked_linear(&qkv, h, h)?,
            attention_out: weights.linear(&format!("{prefix}.attention.output.dense"), h, h)?,
            attention_norm: weights.layer_norm(&format!("{prefix}.attention.output.LayerNorm"), h, eps)?,
            intermediate: weights.linear(&format!("{prefix}.intermediate.dense"), h, config.intermediate_size)?,
            output: weights.linear(&format!("{prefix}.output.dense"), config.intermediate_size, h)?,
            output_norm: weights.layer_norm(&format!("{prefix}.output.LayerNorm"), h, eps)?,
        })
    }

    /// Post-norm block: `norm(x + attention(x))`, then `norm(y + ffn(y))`.
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        (batch, seq, heads, head_dim): (usize, usize, usize, usize),
        activation: Activation,
    ) -> Result<Tensor> {
        let hidden = heads * head_dim;
        // (batch*seq, 3*hidden) -> (3, batch, heads, seq, head_dim): one copy splits q, k, v
        // and moves heads ahead of positions for the batched matmuls.
        let qkv = self.qkv.forward(x)?.reshape((batch, seq, 3, heads, head_dim))?.permute((2, 0, 3, 1, 4))?;
        let qkv = qkv.contiguous()?;
        let q = (qkv.get(0)? * (1.0 / (head_dim as f64).sqrt()))?;
        let (k, v) = (qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((batch * seq, hidden))?;
        let y = self.attention_norm.forward(&(self.attention_out.forward(&context)? + x)?)?;

        let up = self.intermediate.forward(&y)?;
        let up = match activation {
            Activation::Gelu => up.gelu_erf()?,
            Activation::GeluTanh => up.gelu()?,
            Activation::Relu => up.relu()?,
        };
        Ok(self.output_norm.forward(&(self.output.forward(&up)? + y)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    /// A one-layer, two-head BERT with deterministic pseudo-random weights.
    fn tiny() -> Bert {
        let config: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 16, "max_position_embeddings": 12}"#,
        )
        .unwrap();
        let mut seed = 1u32;
        let mut tensor = |shape: &[usize]| {
            let n = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
        };
        let mut t = HashMap::new();
        let mut add = |name: &str, shape: &[usize]| {
            t.insert(name.to_string(), tensor(shape));
        };
        add("embeddings.word_embeddings.weight", &[10, 8]);
        add("embeddings.position_embeddings.weight", &[12, 8]);
        add("embeddings.token_type_embeddings.weight", &[2, 8]);
        for p in
            ["embeddings.LayerNorm", "encoder.layer.0.attention.output.LayerNorm", "encoder.layer.0.output.LayerNorm"]
        {
            add(&format!("{p}.weight"), &[8]);
            add(&format!("{p}.bias"), &[8]);
        }
        for (p, o, i) in [
            ("attention.self.query", 8, 8),
            ("attention.self.key", 8, 8),
            ("attention.self.value", 8, 8),
            ("attention.output.dense", 8, 8),
            ("intermediate.dense", 16, 8),
            ("output.dense", 8, 16),
        ] {
            add(&format!("encoder.layer.0.{p}.weight"), &[o, i]);
            add(&format!("encoder.layer.0.{p}.bias"), &[o]);
        }
        Bert::new(&config, &Weights::from_tensors("tiny".into(), t)).unwrap()
    }

    #[test]
    fn padding_does_not_change_real_positions() {
        let bert = tiny();
        let alone = bert
            .forward(
                &Tensor::new(&[[1u32, 5, 7]], &Device::Cpu).unwrap(),
                &Tensor::ones((1, 3), DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        let ids = Tensor::new(&[[1u32, 5, 7, 0, 0], [1, 2, 3, 4, 9]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.], [1., 1., 1., 1., 1.]], &Device::Cpu).unwrap();
        let batched = bert.forward(&ids, &mask).unwrap();
        assert_eq!(batched.dims(), &[2, 5, 8]);
        let first = batched.get(0).unwrap().narrow(0, 0, 3).unwrap();
        let diff =
            (first - alone.get(0).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "padding leaked into attention: max difference {diff}");
    }
}
