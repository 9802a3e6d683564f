//! luodi's inference engine: loads GGUF models, owns their KV caches, tokenizes, samples.
//!
//! The engine knows nothing about HTTP, storage or configuration files.

pub mod batch;
pub mod chat_template;
mod decoding;
pub mod detokenizer;
pub mod embedding;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod kv_cache;
pub mod lora;
pub mod model;
pub mod sampler;
pub mod scheduler;
pub mod stop;
pub mod tokenizer;

pub use chat_template::ChatMessage;
pub use engine::{Engine, FinishReason, GenerateOutput, GenerateRequest, Prompt, Session, TokenEvent};
pub use error::{EngineError, Result};
pub use sampler::SamplingParams;
