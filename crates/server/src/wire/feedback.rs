//! `POST /v1/feedback`. Unknown fields are refused: a misspelt `correction` must not be
//! silently dropped.

use super::rules::{Bound, Rules};
use super::Request;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

const RULES: Rules = Rules {
    bounds: &[Bound::integer("rating", -1.0, 5.0)],
    expected: &[
        ("request_id", "a non-empty string: the `x-request-id` of the answer"),
        ("correction", "a string"),
        ("comment", "a string"),
        ("labels", "an array of at most 32 strings"),
        ("labels[]", "a non-empty string of at most 64 characters"),
        ("reviewer", "a string"),
    ],
    refused: &[],
};

/// Feedback on an answered request: at least one of rating, correction, comment, labels.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `x-request-id` header of the answer.
    pub request_id: String,
    /// -1, 0 or 1 (thumbs) or 1 to 5 (stars).
    pub rating: Option<i64>,
    /// The answer the model should have given (at most 100,000 characters).
    pub correction: Option<String>,
    /// At most 10,000 characters.
    pub comment: Option<String>,
    /// At most 32 labels of 1 to 64 characters.
    pub labels: Option<Vec<String>>,
    /// Who reviewed, for keyless setups; with an API key, the key's id is recorded instead.
    pub reviewer: Option<String>,
}

impl Request for FeedbackRequest {
    const RULES: &'static [&'static Rules] = &[&RULES];
}

/// The checked fields; `reviewer` still to be resolved against the caller's key.
pub struct Feedback {
    pub request_id: String,
    pub rating: Option<i64>,
    pub correction: Option<String>,
    pub comment: Option<String>,
    pub labels: Vec<String>,
    pub reviewer: Option<String>,
}

impl FeedbackRequest {
    pub fn validate(self) -> Result<Feedback, ApiError> {
        let request_id = self.request_id.trim().to_string();
        if request_id.is_empty() {
            return Err(ApiError::invalid("request_id", "`request_id` is required: the `x-request-id` of the answer"));
        }
        let rating = RULES.bound("rating").expect("feedback rules bound the rating");
        if self.rating.is_some_and(|r| !rating.allows(r as f64)) {
            return Err(ApiError::invalid(
                "rating",
                "`rating` must be an integer: -1, 0 or 1 (thumbs) or 1 to 5 (stars)",
            ));
        }
        let labels = self.labels.unwrap_or_default();
        if labels.len() > 32 {
            return Err(ApiError::invalid("labels", "`labels` must be an array of at most 32 strings"));
        }
        if labels.iter().any(|l| l.is_empty() || l.chars().count() > 64) {
            return Err(ApiError::invalid("labels", "`labels` must be non-empty strings of at most 64 characters"));
        }
        Ok(Feedback {
            request_id,
            rating: self.rating,
            correction: at_most(self.correction, "correction", 100_000)?,
            comment: at_most(self.comment, "comment", 10_000)?,
            labels,
            reviewer: at_most(self.reviewer, "reviewer", 128)?,
        })
    }
}

fn at_most(value: Option<String>, field: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(s) if s.chars().count() > max_chars => {
            Err(ApiError::invalid(field, format!("`{field}` is longer than {max_chars} characters")))
        }
        other => Ok(other),
    }
}

/// A page of stored interactions, newest first, each with its current feedback.
#[derive(Serialize, ToSchema)]
pub struct InteractionList {
    /// `list`
    pub object: &'static str,
    /// Interactions (id, time, model version, messages, answer, ...) with `feedback`.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}
