//! luodi's response cache: frequent questions cost a lookup, not a generation.
//!
//! - [`key`]: what an answer depends on, hashed ([`KeyInput::exact`]), and the context a
//!   paraphrase must share ([`KeyInput::semantic`]).
//! - [`ResponseCache`]: an in-process store (moka, bounded by entries and bytes, TTL) or Redis
//!   (pooled, with a deadline per operation and a cool-down after failures, so a slow or dead
//!   Redis means misses, never errors), exact and semantic lookups, purge by model version.
//!
//! The crate decides nothing about HTTP: which requests are eligible, and what is never stored
//! (blocked, flagged or PII-bearing exchanges), is the server's policy.

pub mod agreement;
mod cache;
pub mod config;
mod entry;
pub mod key;
mod memory;
mod redis_store;
pub mod semantic;
pub mod settle;

pub use cache::{CacheStats, ResponseCache, SemanticHit};
pub use config::{CacheConfig, CacheMode, SemanticConfig, DEFAULT_THRESHOLD};
pub use entry::CachedAnswer;
pub use key::{KeyInput, Message, Sampling};
pub use redis_store::redact_url;

use std::time::Duration;

/// Why a store operation failed. The server serves the request without the cache.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis is cooling down after a failure")]
    Unavailable,
}

impl CacheError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CacheError::Redis(_) => "redis",
            CacheError::Timeout(_) => "timeout",
            CacheError::Unavailable => "cooling_down",
        }
    }
}
