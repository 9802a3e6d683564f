//! The records.

use serde::{Deserialize, Serialize};

/// One guard decision on a request, as stored (types and counts, never values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardAction {
    /// `input` or `output`.
    pub direction: String,
    /// Entity type (`CN_ID`) or lexicon category.
    pub subject: String,
    pub action: String,
    pub rule: String,
    pub count: u32,
}

/// One answered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// The request id (`x-request-id`).
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub created_ms: i64,
    /// Which API key (its id, never the key), when keys are configured.
    pub api_key_id: Option<String>,
    /// `chat`, `text` or `generate`.
    pub route: String,
    pub model_version: String,
    pub style: Option<String>,
    /// The messages as the model saw them (JSON array of `{role, content}`), after the guard.
    pub messages: serde_json::Value,
    pub answer: String,
    pub finish_reason: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub ttft_ms: Option<f64>,
    pub latency_ms: f64,
    /// `hit`, `semantic-hit`, `miss` or `bypass`.
    pub cache: String,
    pub guard: Vec<GuardAction>,
}

/// Feedback as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFeedback {
    pub request_id: String,
    /// Who gave it (an API key id, or a reviewer name).
    pub reviewer: String,
    /// -1/0/1 (thumbs) or 1-5 (stars).
    pub rating: Option<i64>,
    pub correction: Option<String>,
    pub comment: Option<String>,
    pub labels: Vec<String>,
}

/// Stored feedback. A reviewer's newer feedback on the same request supersedes the older,
/// which is kept with `superseded_ms` set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub id: String,
    pub request_id: String,
    pub reviewer: String,
    pub created_ms: i64,
    pub rating: Option<i64>,
    pub correction: Option<String>,
    pub comment: Option<String>,
    pub labels: Vec<String>,
    pub superseded_ms: Option<i64>,
}

/// Which interactions to list. All conditions must hold; `None` means any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only interactions with a current rating at most this (low ratings to review).
    pub max_rating: Option<i64>,
    /// Only interactions with a current rating at least this.
    pub min_rating: Option<i64>,
    /// With (true) or without (false) a current correction.
    pub has_correction: Option<bool>,
    /// With (true) or without (false) any current feedback.
    pub reviewed: Option<bool>,
    pub model_version: Option<String>,
    /// Substring of the messages or the answer.
    pub text: Option<String>,
}

/// One page of a listing, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<Interaction>,
    pub next_cursor: Option<String>,
}
