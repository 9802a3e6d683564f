//! Gemma 3: pre- and post-norms around attention and feed-forward, per-head RMS norm of
//! queries and keys, GELU (tanh) gated feed-forward, embeddings scaled by sqrt(hidden), and
//! five sliding-window layers (local RoPE base 10k) for each global layer (RoPE base from the
//! file). Norm weights in Gemma GGUFs already include the `+1` of the reference code.

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

/// One global-attention layer follows every five sliding-window layers (llama.cpp and the
/// reference implementation hard-code this pattern for Gemma 3; the GGUF does not carry it).
pub const SLIDING_WINDOW_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers, likewise fixed by the architecture.
pub const LOCAL_ROPE_BASE: f32 = 10_000.0;

struct Block {
    attn_norm: RmsNorm,
    /// q, k and v projections of the normed input.
    qkv: Projections,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    wo: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    /// gate and up projections of the normed input.
    gate_up: Projections,
    down: Linear,
    post_ffn_norm: RmsNorm,
    attn: AttentionShape,
    rope: Rope,
}

pub struct Gemma3 {
    config: ModelConfig,
    embeddings: TokenEmbedding,
    embed_scale: f64,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    device: Device,
    /// An adapter applied on top of the base projections (`luodi generate --lora`).
    pub(super) lora: Option<Lora>,
}

impl Gemma3 {
    pub fn config_from(meta: &Metadata) -> Result<ModelConfig> {
        let key = |k: &str| format!("gemma3.{k}");
        let n_heads = meta.usize(&key("attention.head_count"))?;
        let hidden = meta.usize(&key("embedding_length"))?;
        Ok(ModelConfig {
            architecture: "gemma3".into(),
            n_layers: meta.usize(&key("block_count"))?,
            hidden,
            ffn: meta.usize(&key("feed_forward_length"))?,
            n_heads,
            n_kv_heads: meta.opt_usize(&key("attention.head_count_kv"))?.unwrap_or(n_heads),
            head_dim: meta.opt_usize(&key("attention.key_length"))?.unwrap_or(hidden / n_heads),
            context_length: meta.usize(&key("context_length"))?,
            rms_eps: meta.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_base: meta.opt_f32(&key("rope.freq_base"))?.unwrap_or(1_000_000.0),
            vocab_size: 0,
            sliding_window: Some(meta.usize(&key("attention.sliding_window"))?),
        })
    }

    pub fn load(mut config: ModelConfig, src: &mut TensorSource) -> Result<Self> {
        let embeddings = TokenEmbedding::load(src)?;
        config.vocab_size = embeddings.vocab_size();
        let eps = config.rms_eps;
        let global_rope = Rope::new(config.head_dim, config.rope_base, RopeStyle::Halves);
        let local_rope = Rope::new(config.head_dim, LOCAL_ROPE_BASE, RopeStyle::Halves);
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            let global = (i + 1) % SLIDING_WINDOW_PATTERN == 0;
            blocks.push(Block {
                attn_norm: src.rms_norm(&p("attn_norm"), eps)?,
                qkv: Projections::new(vec![
                    src.linear(&p("attn_q"))?,
                    src.linear(&p("attn_k"))?,
                    src.linear(&p("attn_v"))?,
                ]),
                q_norm: src.rms_norm(&p("attn_q_norm"), eps)?,
                k_norm: src.rms_norm(&p("attn_k_norm"), eps)?,
                wo: src.linear(&p("attn_output"))?,
                post_attn_norm: src.rms_norm(&p("post_attention_norm"), eps)?,
                ffn_norm: src.rms_norm(&p("ffn_norm"), eps)?,
                gate_up: Projections::new(vec![src.linear(&p("ffn_gate"))?, src.linear(&p("ffn_up"))?]),
                down: src.linear(&p("ffn_down"))?,
                post_ffn_norm: src.rms_norm(&p("post_ffw_norm"), eps)?,
                attn: AttentionShape {
                    n_heads: config.n_heads,
                    n_kv_heads: config.n_kv_heads,
                    head_dim: config.head_dim,
                    // query_pre_attn_scalar equals head_dim for the released Gemma 3 sizes.
                    scale: 1.0 / (config.head_dim as f32).sqrt(),
                    window: if global { None } else { config.sliding_window },
                },
                rope: if global { global_rope.clone() } else { local_rope.clone() },
            });
        }
        let output_norm = src.rms_norm("output_norm.weight", eps)?;
        let embed_scale = (config.hidden as f64).sqrt();
        Ok(Self { config, embeddings, embed_scale, blocks, output_norm, device: src.device.clone(), lora: None })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn forward(&self, batch: &mut [SeqBatch<'_>]) -> Result<Tensor> {
        let ids: Vec<u32> = batch.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let mut x = (self.embeddings.embed(&ids, &self.device)? * self.embed_scale)?;
        let (nh, nkv, hd) = (self.config.n_heads, self.config.n_kv_heads, self.config.head_dim);
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x)?;
            let lora = self.lora.as_ref();
            let [q, k, v] = projections3(&block.qkv, &h)?;
            let q = Lora::apply(lora, layer, 0, q, &h)?;
            let k = Lora::apply(lora, layer, 1, k, &h)?;
            let v = Lora::apply(lora, layer, 2, v, &h)?;
            // Per-head RMS norms of q and k, one op for every row of the batch.
            let rows = q.dim(0)?;
            let q = block.q_norm.forward(&q.contiguous()?.reshape((rows * nh, hd))?)?.reshape((rows, nh * hd))?;
            let k = block.k_norm.forward(&k.contiguous()?.reshape((rows * nkv, hd))?)?.reshape((rows, nkv * hd))?;
            let attn = attention(&block.attn, &block.rope, layer, &q, &k, &v, batch)?;
            let attn = Lora::apply(lora, layer, 3, block.wo.forward(&attn)?, &attn)?;
            x = (x + block.post_attn_norm.forward(&attn)?)?;
            let h = block.ffn_norm.forward(&x)?;
            let [gate, up] = projections2(&block.gate_up, &h)?;
            let gate = Lora::apply(lora, layer, 4, gate, &h)?;
            let up = Lora::apply(lora, layer, 5, up, &h)?;
            let ff = (gelu(&gate)? * up)?;
            let ff = Lora::apply(lora, layer, 6, block.down.forward(&ff)?, &ff)?;
            x = (x + block.post_ffn_norm.forward(&ff)?)?;
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

/// GELU (tanh approximation) evaluated as ggml does on the CPU: input and output rounded to
/// f16 (ggml reads a 64k-entry f16 table). Gemma's activations are large and this rounding
/// moves near-tied logits, so matching it keeps greedy output equal to llama.cpp's.
fn gelu(x: &Tensor) -> Result<Tensor> {
    use candle_core::DType;
    Ok(x.to_dtype(DType::F16)?.to_dtype(DType::F32)?.gelu()?.to_dtype(DType::F16)?.to_dtype(DType::F32)?)
}
