//! The engine: one loaded model with its tokenizer and chat template, and the generation
//! loop (prefill in chunks, then decode token by token with sampling, stop strings and
//! incremental detokenization).

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::decoding::{Decoding, Next};
use crate::error::{EngineError, Result};
use crate::gguf::Metadata;
use crate::kv_cache::SequenceKv;
use crate::model::{self, GgufSummary, Model, ModelConfig, SeqBatch};
use crate::sampler::{SampledToken, SamplingParams};
use crate::tokenizer::Tokenizer;
use candle_core::Device;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prompt tokens per forward pass during prefill: bounds the activation memory of long
/// prompts (attention scores grow with chunk x context).
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    summary: GgufSummary,
    path: PathBuf,
    device: Device,
    prefill_chunk: usize,
}

/// What to generate from.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Rendered through the model's chat template, with the assistant turn opened.
    Chat(Vec<ChatMessage>),
    /// Used as is (BOS added when the model asks for it).
    Raw(String),
    /// Already tokenized.
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

/// One step of the output stream.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    /// The token just sampled; `None` for the final flush of held-back text.
    pub token: Option<&'a SampledToken>,
    /// Text that became final with this token (may be empty: an incomplete UTF-8 character
    /// or a possible stop string is held back).
    pub text: &'a str,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// Prompt tokens actually computed (less than `prompt_tokens` when a cached prefix was reused).
    pub prefilled_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
    pub time_to_first_token: Duration,
}

impl Timings {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prefilled_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateOutput {
    pub text: String,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<SampledToken>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub timings: Timings,
}

impl GenerateOutput {
    pub fn completion_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Decode speed over the tokens after the first (the first one's cost is prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        n as f64 / self.timings.decode.as_secs_f64().max(1e-9)
    }
}

/// A sequence's cache together with the tokens it holds, so a follow-up request that
/// extends the same conversation recomputes only what is new.
pub struct Session {
    kv: SequenceKv,
    tokens: Vec<u32>,
}

impl Session {
    pub fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }
}

impl Engine {
    pub fn load(path: &Path) -> Result<Self> {
        let (mut file, content) = model::read_header(path)?;
        let meta = Metadata::new(&content);
        let device = Device::Cpu;
        let summary = model::summarize(&content);
        // Refuse unknown architectures before the (slow) tokenizer and tensor loading.
        let arch = meta.string("general.architecture")?;
        if !matches!(arch, "llama" | "gemma3") {
            return Err(EngineError::UnsupportedArchitecture(arch.to_string()));
        }
        let tokenizer = Tokenizer::from_gguf(&meta)?;
        let template = match meta.opt_string("tokenizer.chat_template") {
            Some(src) => Some(ChatTemplate::new(
                src.to_string(),
                token_text(&tokenizer, tokenizer.bos_token_id()),
                token_text(&tokenizer, tokenizer.eos_token_id()),
            )?),
            None => None,
        };
        let model = Model::load(path, &mut file, &content, &device)?;
        Ok(Self {
            model,
            tokenizer,
            template,
            summary,
            path: path.to_path_buf(),
            device,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
        })
    }

    /// Replaces the file's chat template (or supplies one for a base model).
    pub fn set_chat_template(&mut self, source: String) -> Result<()> {
        let tok = &self.tokenizer;
        self.template =
            Some(ChatTemplate::new(source, token_text(tok, tok.bos_token_id()), token_text(tok, tok.eos_token_id()))?);
        Ok(())
    }

    /// Applies a PEFT LoRA adapter (directory) on top of the base weights for everything this
    /// engine generates from now on; returns it as read (config and metadata).
    pub fn load_lora(&mut self, dir: &Path) -> Result<crate::lora::PeftAdapter> {
        let adapter = crate::lora::read_peft(dir, self.config())?;
        let lora = crate::lora::Lora::new(&adapter, &self.device)?;
        self.model.set_lora(Some(lora));
        Ok(adapter)
    }

    pub fn set_prefill_chunk(&mut self, chunk: usize) {
        self.prefill_chunk = chunk.max(1);
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    pub fn summary(&self) -> &GgufSummary {
        &self.summary
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chat template itself, for callers that render conversations without a generation
    /// prompt (the trainer marks assistant turns with it, exactly as served).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The text the model sees for a conversation.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self.template.as_ref().ok_or_else(|| {
            EngineError::Template(
                "this model file has no tokenizer.chat_template (a base model?); use a raw prompt (--raw) or supply a template".into(),
            )
        })?;
        template.render(messages, true)
    }

    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        match prompt {
            // Control tokens written by the template (<|im_start|>) must become single tokens.
            Prompt::Chat(messages) => self.tokenizer.encode(&self.render_chat(messages)?, true, true),
            // Raw text is the user's: "<|im_end|>" typed in it is text, not a control token.
            Prompt::Raw(text) => self.tokenizer.encode(text, true, false),
            Prompt::Tokens(ids) => {
                let vocab = self.config().vocab_size;
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(EngineError::InvalidParameter {
                        field: "prompt",
                        message: format!("token id {bad} is outside the vocabulary (size {vocab})"),
                    });
                }
                Ok(ids.clone())
            }
        }
    }

    pub fn new_session(&self, capacity: usize) -> Result<Session> {
        let capacity = capacity.min(self.config().context_length);
        Ok(Session { kv: SequenceKv::new(self.config().kv_layout(), capacity, &self.device)?, tokens: Vec::new() })
    }

    /// Generates with a fresh cache.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<GenerateOutput> {
        let mut session = self.new_session(256)?;
        self.generate_in(&mut session, request, on_token)
    }

    /// Generates in `session`, reusing the longest cached prefix of the prompt.
    pub fn generate_in(
        &self,
        session: &mut Session,
        request: &GenerateRequest,
        mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<GenerateOutput> {
        let start = Instant::now();
        let prompt = self.tokenize_prompt(&request.prompt)?;
        let ctx = self.config().context_length;
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { field: "prompt", message: "must not be empty".into() });
        }
        if prompt.len() + request.max_tokens > ctx {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: request.max_tokens,
                context_length: ctx,
            });
        }
        let mut decoding = Decoding::new(request, prompt.len(), start)?;

        // Prefix reuse: keep what the cache already holds of this prompt; at least one
        // token must be computed to get logits.
        let reuse = common_prefix(&session.tokens, &prompt).min(prompt.len() - 1);
        session.kv.truncate(reuse);
        session.tokens.truncate(reuse);
        session.kv.reserve(prompt.len() - reuse + request.max_tokens)?;

        let mut logits = Vec::new();
        for chunk in prompt[reuse..].chunks(self.prefill_chunk) {
            logits = self.forward_one(&mut session.kv, chunk)?;
        }
        session.tokens.extend_from_slice(&prompt);
        let prefill = start.elapsed();

        let decode_start = Instant::now();
        while let Next::Continue(id) = decoding.step(&self.tokenizer, &mut logits, &session.tokens, &mut on_token) {
            session.tokens.push(id);
            logits = self.forward_one(&mut session.kv, &[id])?;
        }
        // The last sampled token was never fed back: the cache holds one token less.
        session.tokens.truncate(session.kv.len());
        let mut out = decoding.finish(None, &mut on_token);
        out.timings.prefilled_tokens = prompt.len() - reuse;
        out.timings.prefill = prefill;
        out.timings.decode = decode_start.elapsed();
        Ok(out)
    }

    fn forward_one(&self, kv: &mut SequenceKv, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.model.forward(&mut [SeqBatch { tokens, kv }])?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// One forward pass over several sessions at once, `tokens[i]` appended to
    /// `sessions[i]`; returns each session's last logits. For batched benchmarks.
    pub fn forward_batch(&self, sessions: &mut [Session], tokens: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut batch: Vec<SeqBatch<'_>> =
            sessions.iter_mut().zip(tokens).map(|(s, t)| SeqBatch { tokens: t, kv: &mut s.kv }).collect();
        let logits = self.model.forward(&mut batch)?;
        drop(batch);
        for (s, t) in sessions.iter_mut().zip(tokens) {
            s.tokens.extend_from_slice(t);
        }
        Ok(logits.to_vec2::<f32>()?)
    }

    /// Runs the model over `tokens` in one forward pass and returns the last logits; for
    /// benchmarks and tests that need the model without sampling.
    pub fn forward_tokens(&self, session: &mut Session, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.forward_one(&mut session.kv, tokens)?;
        session.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}

fn token_text(tok: &Tokenizer, id: Option<u32>) -> String {
    id.and_then(|id| tok.token_text(id)).unwrap_or_default().to_string()
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
