//! HTTP handlers, one file per family of endpoints.

pub mod admin;
pub mod completions;
pub mod console;
pub mod embeddings;
pub mod feedback;
pub mod generate;
pub mod system;

use crate::error::ApiError;
use crate::validate::parse_object;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

/// A JSON object body; malformed JSON and over-limit bodies become OpenAI-shaped errors.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::bad_json(format!("cannot read the request body: {rejection}"))
            }
        })?;
        Ok(JsonObject(parse_object(&bytes)?))
    }
}

/// The configured body limit, for the 413 message.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A whole (non-streamed) answer.
pub struct Answer {
    pub text: String,
    pub logprobs: Vec<crate::backend::TokenInfo>,
    pub done: crate::backend::Finished,
    /// Whether the output filter acted on it (such answers are never cached).
    pub moderated: bool,
    /// The answer as storage keeps it (pseudonyms not restored), every guard decision on the
    /// request, and the time to the first token.
    pub stored_text: String,
    pub guard: Vec<luodi_store::GuardAction>,
    pub ttft: Option<std::time::Duration>,
}

/// Drains a request's events into one answer through the guard's output filter, recording
/// time to first token. When the filter blocks, the generation is cancelled (the events are
/// dropped), the answer is what passed before the block and `finish_reason` is
/// `content_filter` (usage then counts the tokens generated so far, and no prompt tokens).
pub async fn collect_answer(
    mut events: crate::backend::EventStream,
    started: Option<std::time::Instant>,
    mut filter: crate::guarding::OutputFilter,
) -> Result<Answer, ApiError> {
    use crate::backend::{Finished, GenEvent};
    // `started` is None for answers replayed from the cache: they have no time to first token.
    let (mut text, mut logprobs, mut first, mut tokens) = (String::new(), Vec::new(), started.is_some(), 0);
    let mut ttft = None;
    while let Some(event) = events.recv().await {
        let released = match event? {
            GenEvent::Token { text: piece, info } => {
                if let (true, Some(started)) = (first, started) {
                    metrics::histogram!("luodi_time_to_first_token_seconds").record(started.elapsed().as_secs_f64());
                    ttft = Some(started.elapsed());
                    first = false;
                }
                tokens += 1;
                filter.push(&piece, info)
            }
            GenEvent::Done(done) => {
                return Ok(match filter.finish() {
                    Ok(rest) => {
                        text.push_str(&rest.text);
                        logprobs.extend(rest.infos);
                        let (stored_text, guard) = (filter.stored_text().to_string(), filter.actions());
                        Answer { text, logprobs, done, moderated: filter.acted(), stored_text, guard, ttft }
                    }
                    Err(_) => Answer {
                        stored_text: filter.stored_text().to_string(),
                        guard: filter.actions(),
                        text,
                        logprobs,
                        done: Finished { finish_reason: CONTENT_FILTER, ..done },
                        moderated: true,
                        ttft,
                    },
                });
            }
        };
        match released {
            Ok(r) => {
                text.push_str(&r.text);
                logprobs.extend(r.infos);
            }
            Err(_) => {
                drop(events);
                let done = Finished { finish_reason: CONTENT_FILTER, prompt_tokens: 0, completion_tokens: tokens };
                let (stored_text, guard) = (filter.stored_text().to_string(), filter.actions());
                return Ok(Answer { text, logprobs, done, moderated: true, stored_text, guard, ttft });
            }
        }
    }
    Err(ApiError::internal("the engine ended a request without finishing it"))
}

/// `finish_reason` of an answer the guard stopped.
pub const CONTENT_FILTER: &str = "content_filter";

/// The request id the request-id layer set (for guard logs).
pub fn request_id(headers: &axum::http::HeaderMap) -> &str {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-")
}

pub fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
