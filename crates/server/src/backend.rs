//! The one seam between HTTP and the engine: `submit` a validated request, get a stream of
//! events. The server is tested with a fake backend through `Router::oneshot`.

use crate::error::ApiError;
use luodi_engine::{Prompt, SamplingParams};
use std::time::Instant;
use tokio::sync::mpsc;

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Generation ends with finish_reason "length" when this passes.
    pub deadline: Option<Instant>,
    pub logprobs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top: Vec<(String, f32, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// Text that became final (may be empty when a character or stop string is held back).
    Token {
        text: String,
        info: Option<TokenInfo>,
    },
    Done(Finished),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Events of one request, in order, ending with `Done` or an error.
pub type EventStream = mpsc::UnboundedReceiver<Result<GenEvent, ApiError>>;

pub trait Backend: Send + Sync + 'static {
    /// The id clients pass as `model`.
    fn model_id(&self) -> &str;
    fn context_length(&self) -> usize;
    fn is_ready(&self) -> bool;
    /// Queues a request; fails at once with 429 when the queue is full, 503 when not ready.
    fn submit(&self, request: GenRequest) -> Result<EventStream, ApiError>;
    /// Requests waiting and running, for metrics and readiness.
    fn load(&self) -> (usize, usize);
}

/// Sentence embeddings behind the same kind of seam.
pub trait Embedder: Send + Sync + 'static {
    fn model_id(&self) -> &str;
    /// Longest input in tokens (longer inputs are truncated, as sentence-transformers does).
    fn max_tokens(&self) -> usize;
    /// One L2-normalized vector per input, and the tokens each input used.
    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), ApiError>;
}

impl Embedder for (String, luodi_engine::embedding::EmbeddingModel) {
    fn model_id(&self) -> &str {
        &self.0
    }

    fn max_tokens(&self) -> usize {
        self.1.max_tokens()
    }

    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), ApiError> {
        let out = self.1.embed(inputs).map_err(ApiError::from)?;
        Ok((out.vectors, out.token_counts))
    }
}
