//! The engine's one error type. Callers (CLI, server) map these to exit codes or HTTP
//! statuses in exactly one place each.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },

    #[error("GGUF metadata key `{key}` is missing")]
    MissingMetadata { key: String },

    #[error("GGUF metadata key `{key}` has the wrong type: expected {expected}")]
    BadMetadata { key: String, expected: &'static str },

    #[error("GGUF tensor `{name}` is missing")]
    MissingTensor { name: String },

    #[error("unsupported model architecture `{0}` (supported: llama, gemma3)")]
    UnsupportedArchitecture(String),

    #[error("unsupported tokenizer `{0}` (supported: gpt2 BPE, llama SentencePiece)")]
    UnsupportedTokenizer(String),

    #[error("adapter {path}: {reason}")]
    Adapter { path: PathBuf, reason: String },

    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    #[error("chat template error: {0}")]
    Template(String),

    #[error("the prompt has {prompt_tokens} tokens but the context window is {context_length} tokens (max_tokens {max_tokens} more would be needed)")]
    ContextOverflow { prompt_tokens: usize, max_tokens: usize, context_length: usize },

    #[error("the prompt needs {tokens} tokens of KV cache but the server's KV memory budget holds {capacity}; shorten the prompt or raise the KV memory limit")]
    KvBudgetExceeded { tokens: usize, capacity: usize },

    #[error("a batched forward pass failed: {0}")]
    BatchFailed(String),

    #[error("invalid parameter `{field}`: {message}")]
    InvalidParameter { field: &'static str, message: String },

    #[error("tensor error: {}", without_backtrace(.0))]
    Tensor(#[from] candle_core::Error),
}

/// candle attaches a backtrace to its errors when RUST_BACKTRACE is set; users get the
/// message, developers can still ask for the backtrace through the log.
pub fn without_backtrace(e: &candle_core::Error) -> String {
    let text = e.to_string();
    match text.find("\n   0: ") {
        Some(at) => text[..at].trim_end().to_string(),
        None => text,
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
