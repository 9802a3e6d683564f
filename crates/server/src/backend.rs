//! The one seam between the server and whatever generates: `submit` a validated request, get
//! a stream of events. The server owns these types (it does not depend on the engine): the
//! adapter from luodi's engine lives in the `luodi-engine-backend` crate and is wired by the
//! CLI; an upstream backend (vLLM, TGI) or a gRPC front will plug into the same seam. The
//! server is tested with fake backends (`tests/common`).

use std::time::Instant;
use tokio::sync::mpsc;

/// One chat message as the model will see it (roles already normalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Rendered through the model's chat template, with the assistant turn opened.
    Chat(Vec<ChatMessage>),
    /// Used as is.
    Raw(String),
    /// Already tokenized.
    Tokens(Vec<u32>),
}

/// Sampling as the API asks for it (OpenAI's defaults come from `validate.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub seed: Option<u64>,
    /// Alternatives reported per token (0: only the chosen token's logprob).
    pub top_logprobs: usize,
}

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: Sampling,
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

/// Why an answer ended; a string only on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the request deadline.
    Length,
    /// The guard stopped the answer.
    ContentFilter,
    /// Cancelled from outside (the client went away).
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Cancelled => "cancelled",
        }
    }
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
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What can go wrong behind the seam; `error.rs` turns each into a status and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("the model is not loaded yet")]
    NotReady,
    #[error("the request queue is full")]
    Overloaded { retry_after: u64 },
    #[error("the request timed out before generation started")]
    TimedOut,
    #[error("the prompt has {prompt_tokens} tokens; with max_tokens {max_tokens} it exceeds the context of {context_length}")]
    ContextOverflow { prompt_tokens: usize, max_tokens: usize, context_length: usize },
    /// The prompt does not fit the KV memory budget (the message says how much it needs).
    #[error("{0}")]
    KvBudgetExceeded(String),
    #[error("`{field}` {message}")]
    InvalidParameter { field: String, message: String },
    /// The chat template refused the messages.
    #[error("{0}")]
    Template(String),
    /// Anything else; logged, not shown to clients.
    #[error("{0}")]
    Internal(String),
}

/// Events of one request, in order, ending with `Done` or an error.
pub type EventStream = mpsc::UnboundedReceiver<Result<GenEvent, BackendError>>;

pub trait Backend: Send + Sync + 'static {
    /// The id clients pass as `model`.
    fn model_id(&self) -> &str;
    fn context_length(&self) -> usize;
    fn is_ready(&self) -> bool;
    /// Queues a request; fails at once when the queue is full or the model is not ready.
    fn submit(&self, request: GenRequest) -> Result<EventStream, BackendError>;
    /// Requests waiting and running, for metrics and readiness.
    fn load(&self) -> (usize, usize);
}

/// Sentence embeddings behind the same kind of seam.
pub trait Embedder: Send + Sync + 'static {
    fn model_id(&self) -> &str;
    /// Longest input in tokens (longer inputs are truncated, as sentence-transformers does).
    fn max_tokens(&self) -> usize;
    /// One L2-normalized vector per input, and the tokens each input used.
    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError>;
}
