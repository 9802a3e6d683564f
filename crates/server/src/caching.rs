//! The response cache on the request path: which requests may use it, the lookup (exact, then
//! semantic), and storing answers. What is never stored, by construction: answers to prompts
//! in which the guard found PII or a lexicon term (whatever the action), answers the output
//! moderation touched, answers that did not end on their own (`stop`) or at `max_tokens`
//! (a deadline cut them), and requests with logprobs (not kept).

use crate::backend::{Embedder, GenRequest};
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::HeaderMap;
use luodi_cache::{CacheMode, CachedAnswer, KeyInput, Message, ResponseCache, Sampling};
use luodi_engine::ChatMessage;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The `x-cache` header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    SemanticHit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// A request that may use the cache.
pub struct CachePlan {
    cache: Arc<ResponseCache>,
    model_version: String,
    store_key: String,
    lookup: bool,
    store: bool,
    max_tokens: usize,
    /// (context, question) for single-turn requests when the semantic cache is on.
    semantic: Option<(String, String)>,
    embedder: Option<Arc<dyn Embedder>>,
    /// The question's embedding, once computed (kept from the lookup for storing).
    embedding: Option<Vec<f32>>,
}

/// A cached answer and where it came from.
pub struct Cached {
    pub answer: CachedAnswer,
    pub status: CacheStatus,
    /// For a semantic hit: the cached question it answered, and the similarity.
    pub source: Option<(String, f32)>,
}

/// What the request asked of the cache through `Cache-Control` and the `cache` extension field.
struct Directives {
    lookup: bool,
    store: bool,
}

fn directives(headers: &HeaderMap, body: &Map<String, Value>) -> Result<Directives, ApiError> {
    let mut d = Directives { lookup: true, store: true };
    for value in headers.get_all(axum::http::header::CACHE_CONTROL) {
        let value = value.to_str().unwrap_or("");
        for directive in value.split(',').map(|s| s.trim().to_ascii_lowercase()) {
            match directive.as_str() {
                // HTTP semantics: no-cache = do not answer from the cache (but keep the fresh
                // answer); no-store = neither read nor write.
                "no-cache" => d.lookup = false,
                "no-store" => (d.lookup, d.store) = (false, false),
                _ => {}
            }
        }
    }
    match body.get("cache") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => (d.lookup, d.store) = (false, false),
        Some(_) => {
            return Err(ApiError::invalid(
                "cache",
                "`cache` must be a boolean (false: neither answer from nor store in the response cache)",
            ))
        }
    }
    Ok(d)
}

/// Everything [`plan`] needs from the request.
pub struct CacheRequest<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a Map<String, Value>,
    /// `chat` or `text`.
    pub route: &'static str,
    /// The messages as the model will see them (guarded, styled); a text prompt is one user
    /// message under route `text`.
    pub messages: &'a [ChatMessage],
    pub style: Option<&'a str>,
    pub gen: &'a GenRequest,
    /// Whether the guard found anything in the prompt.
    pub input_touched: bool,
}

/// `Ok(None)` when the request bypasses the cache; errors only for a malformed `cache` field.
pub fn plan(state: &AppState, r: CacheRequest) -> Result<Option<CachePlan>, ApiError> {
    let d = directives(r.headers, r.body)?;
    let Some(cache) = state.cache.clone() else { return Ok(None) };
    let s = &r.gen.sampling;
    let sampling = Sampling {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        min_p: s.min_p,
        seed: s.seed,
        repetition_penalty: s.repetition_penalty,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        max_tokens: r.gen.max_tokens,
        stop: r.gen.stop.clone(),
    };
    let eligible = match cache.config().mode {
        CacheMode::Off => false,
        CacheMode::Deterministic => sampling.is_deterministic(),
        CacheMode::Always => true,
    };
    if !eligible || r.input_touched || r.gen.logprobs || !(d.lookup || d.store) {
        return Ok(None);
    }
    let messages: Vec<Message> = r.messages.iter().map(|m| Message { role: &m.role, content: &m.content }).collect();
    let input = KeyInput {
        model_version: &state.model_version,
        route: r.route,
        messages: &messages,
        style: r.style,
        sampling: &sampling,
    };
    let semantic = if cache.config().semantic.enabled && state.embedder.is_some() && r.route == "chat" {
        input.semantic()
    } else {
        None
    };
    Ok(Some(CachePlan {
        store_key: cache.store_key(&state.model_version, &input.exact()),
        model_version: state.model_version.clone(),
        lookup: d.lookup,
        store: d.store,
        max_tokens: r.gen.max_tokens,
        semantic,
        embedder: state.embedder.clone(),
        embedding: None,
        cache,
    }))
}

fn count(status: CacheStatus) {
    metrics::counter!("luodi_cache_requests_total", "result" => status.as_str()).increment(1);
}

/// Counts a request that did not use the cache.
pub fn count_bypass() {
    count(CacheStatus::Bypass);
}

impl CachePlan {
    /// Exact lookup, then semantic. A store error is a miss (counted in the cache's metrics).
    pub async fn lookup(&mut self) -> Option<Cached> {
        if !self.lookup {
            count(CacheStatus::Miss);
            return None;
        }
        if let Ok(Some(answer)) = self.cache.get(&self.store_key).await {
            count(CacheStatus::Hit);
            return Some(Cached { answer, status: CacheStatus::Hit, source: None });
        }
        if let (Some((context, question)), Some(embedder)) = (&self.semantic, &self.embedder) {
            let (embedder, text) = (embedder.clone(), question.clone());
            // Embedding is CPU work: keep it off the async workers.
            let embedded = tokio::task::spawn_blocking(move || embedder.embed(&[text.as_str()])).await;
            if let Ok(Ok((mut vectors, _))) = embedded {
                let embedding = vectors.pop().unwrap_or_default();
                let found = self.cache.get_semantic(&self.model_version, context, question, &embedding).await;
                self.embedding = Some(embedding);
                if let Ok(Some(hit)) = found {
                    count(CacheStatus::SemanticHit);
                    return Some(Cached {
                        answer: hit.answer,
                        status: CacheStatus::SemanticHit,
                        source: Some((hit.question, hit.similarity)),
                    });
                }
            }
        }
        count(CacheStatus::Miss);
        None
    }

    /// Stores a finished answer in the background when it may be reused (see the module
    /// comment); `moderated` is whether the output filter acted on it.
    pub fn store(
        self,
        text: String,
        finish_reason: &str,
        prompt_tokens: usize,
        completion_tokens: usize,
        moderated: bool,
    ) {
        let complete = finish_reason == "stop" || (finish_reason == "length" && completion_tokens == self.max_tokens);
        if !self.store || moderated || !complete {
            return;
        }
        let answer = CachedAnswer {
            text,
            finish_reason: finish_reason.to_string(),
            prompt_tokens,
            completion_tokens,
            question: self.semantic.as_ref().map(|(_, q)| q.clone()),
            created: crate::routes::unix_time(),
        };
        tokio::spawn(async move {
            let semantic = match (&self.semantic, self.embedding) {
                (Some((context, question)), Some(embedding)) => Some((context.as_str(), question.as_str(), embedding)),
                _ => None,
            };
            let _ = self.cache.put(&self.model_version, &self.store_key, &answer, semantic).await;
        });
    }
}
