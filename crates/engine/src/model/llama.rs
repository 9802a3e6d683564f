//! The llama family (Llama 2/3, SmolLM, Mistral without sliding window): pre-norm decoder
//! blocks with RMS norm, grouped-query attention with interleaved rotary embeddings and a
//! SwiGLU feed-forward.

use super::attention::attention;
use super::layers::{
    projections2, projections3, AttentionShape, Linear, Projections, RmsNorm, Rope, RopeStyle, TensorSource,
    TokenEmbedding,
};
use super::{ModelConfig, SeqBatch};
use crate::error::Result;
use crate::gguf::Metadata;
use crate::lora::Lora;
use candle_core::{Device, Tensor};

struct Block {
    attn_norm: RmsNorm,
    /// q, k and v projections of the normed input.
    qkv: Projections,
    wo: Linear,
    ffn_norm: RmsNorm,
    /// gate and up projections of the normed input.
    gate_up: Projections,
    down: Linear,
}

pub struct Llama {
    config: ModelConfig,
    embeddings: TokenEmbedding,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    rope: Rope,
    attn: AttentionShape,
    device: Device,
    /// An adapter applied on top of the base projections (`luodi generate --lora`).
    pub(super) lora: Option<Lora>,
}

impl Llama {
    pub fn config_from(meta: &Metadata) -> Result<ModelConfig> {
        let arch = meta.string("general.architecture")?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = meta.usize(&key("embedding_length"))?;
        let n_heads = meta.usize(&key("attention.head_count"))?;
        let n_kv_heads = meta.opt_usize(&key("attention.head_count_kv"))?.unwrap_or(n_heads);
        let head_dim = meta.opt_usize(&key("rope.dimension_count"))?.unwrap_or(hidden / n_heads);
        Ok(ModelConfig {
            architecture: arch.clone(),
            n_layers: meta.usize(&key("block_count"))?,
            hidden,
            ffn: meta.usize(&key("feed_forward_length"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            context_length: meta.usize(&key("context_length"))?,
            rms_eps: meta.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_base: meta.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            vocab_size: 0,
            sliding_window: None,
        })
    }

    pub fn load(mut config: ModelConfig, src: &mut TensorSource) -> Result<Self> {
        let embeddings = TokenEmbedding::load(src)?;
        config.vocab_size = embeddings.vocab_size();
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            blocks.push(Block {
                attn_norm: src.rms_norm(&p("attn_norm"), config.rms_eps)?,
                qkv: Projections::new(vec![
                    src.linear(&p("attn_q"))?,
                    src.linear(&p("attn_k"))?,
                    src.linear(&p("attn_v"))?,
                ]),
                wo: src.linear(&p("attn_output"))?,
                ffn_norm: src.rms_norm(&p("ffn_norm"), config.rms_eps)?,
                gate_up: Projections::new(vec![src.linear(&p("ffn_gate"))?, src.linear(&p("ffn_up"))?]),
                down: src.linear(&p("ffn_down"))?,
            });
        }
        let output_norm = src.rms_norm("output_norm.weight", config.rms_eps)?;
        let rope = Rope::new(config.head_dim, config.rope_base, RopeStyle::Interleaved);
        let attn = AttentionShape {
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            scale: 1.0 / (config.head_dim as f32).sqrt(),
            window: None,
        };
        Ok(Self { config, embeddings, blocks, output_norm, rope, attn, device: src.device.clone(), lora: None })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn forward(&self, batch: &mut [SeqBatch<'_>]) -> Result<Tensor> {
        let ids: Vec<u32> = batch.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let mut x = self.embeddings.embed(&ids, &self.device)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x)?;
            let lora = self.lora.as_ref();
            let [q, k, v] = projections3(&block.qkv, &h)?;
            let q = Lora::apply(lora, layer, 0, q, &h)?;
            let k = Lora::apply(lora, layer, 1, k, &h)?;
            let v = Lora::apply(lora, layer, 2, v, &h)?;
            let attn = attention(&self.attn, &self.rope, layer, &q, &k, &v, batch)?;
            x = (x + Lora::apply(lora, layer, 3, block.wo.forward(&attn)?, &attn)?)?;
            let h = block.ffn_norm.forward(&x)?;
            let [gate, up] = projections2(&block.gate_up, &h)?;
            let gate = Lora::apply(lora, layer, 4, gate, &h)?;
            let up = Lora::apply(lora, layer, 5, up, &h)?;
            let ff = (candle_nn::ops::silu(&gate)? * up)?;
            x = (x + Lora::apply(lora, layer, 6, block.down.forward(&ff)?, &ff)?)?;
        }
        for seq in batch.iter_mut() {
            seq.kv.advance(seq.tokens.len());
        }
        let lens: Vec<usize> = batch.iter().map(|s| s.tokens.len()).collect();
        let last = super::layers::last_rows(&x, &lens)?;
        let h = self.output_norm.forward(&last)?;
        self.embeddings.project(&h)
    }
}
