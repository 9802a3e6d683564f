//! What is stored: the answer and what the response needs to be rebuilt.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub text: String,
    /// `stop` or `length` (answers that ended any other way are never stored).
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The (normalized) user question it answered, for single-turn requests: a semantic hit
    /// reports which question it came from.
    pub question: Option<String>,
    /// Unix seconds when it was generated.
    pub created: u64,
}

impl CachedAnswer {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cached answer serializes")
    }

    /// `None` for bytes that are not an entry (another version's format, a foreign key).
    pub fn from_bytes(bytes: &[u8]) -> Option<CachedAnswer> {
        serde_json::from_slice(bytes).ok()
    }
}
