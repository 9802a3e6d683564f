//! The response cache on the request path: which requests may use it, the lookup (exact, then
//! semantic), and storing answers. What is never stored, by construction: answers to prompts
//! in which the guard found PII or a lexicon term (whatever the action), answers the output
//! moderation touched, answers that did not end on their own (`stop`) or at `max_tokens`
//! (a deadline cut them), and requests with logprobs (not kept).

use crate::backend::{ChatMessage, FinishReason};
use crate::backend::{Embedder, EventStream, Finished, GenEvent, GenRequest};
use crate::pipeline::Route;
use crate::state::AppState;
use axum::http::HeaderMap;
use luodi_cache::{CacheMode, CachedAnswer, KeyInput, Message, ResponseCache, Sampling};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheDirectives {
    pub lookup: bool,
    pub store: bool,
}

impl Default for CacheDirectives {
    fn default() -> Self {
        CacheDirectives { lookup: true, store: true }
    }
}

/// Reads `Cache-Control` (`no-cache`, `no-store`) and the body's `cache` field; a `cache`
/// that is not a boolean is a 400.
/// `Cache-Control` and the body's `cache` field (`false`: neither read nor write).
pub fn directives(headers: &HeaderMap, cache: Option<bool>) -> CacheDirectives {
    let mut d = CacheDirectives::default();
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
    if cache == Some(false) {
        (d.lookup, d.store) = (false, false);
    }
    d
}

/// The request's cache plan, or `None` when it bypasses the cache. `messages` are what the
/// model will see (guarded, styled); `input_touched` whether the guard found anything in them.
pub fn plan(
    state: &AppState,
    d: CacheDirectives,
    route: Route,
    messages: &[ChatMessage],
    style: Option<&str>,
    gen: &GenRequest,
    input_touched: bool,
) -> Option<CachePlan> {
    let cache = state.cache.clone()?;
    let s = &gen.sampling;
    let sampling = Sampling {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        min_p: s.min_p,
        seed: s.seed,
        repetition_penalty: s.repetition_penalty,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        max_tokens: gen.max_tokens,
        stop: gen.stop.clone(),
    };
    let eligible = match cache.config().mode {
        CacheMode::Off => false,
        CacheMode::Deterministic => sampling.is_deterministic(),
        CacheMode::Always => true,
    };
    if !eligible || input_touched || gen.logprobs || !(d.lookup || d.store) {
        return None;
    }
    let messages: Vec<Message> = messages.iter().map(|m| Message { role: &m.role, content: &m.content }).collect();
    let input = KeyInput {
        model_version: &state.model_version,
        route: route.as_str(),
        messages: &messages,
        style,
        sampling: &sampling,
    };
    let semantic = if cache.config().semantic.enabled && state.embedder.is_some() && route == Route::Chat {
        input.semantic()
    } else {
        None
    };
    Some(CachePlan {
        store_key: cache.store_key(&state.model_version, &input.exact()),
        model_version: state.model_version.clone(),
        lookup: d.lookup,
        store: d.store,
        max_tokens: gen.max_tokens,
        semantic,
        embedder: state.embedder.clone(),
        embedding: None,
        cache,
    })
}

/// A cached answer as the engine's events: the text in small pieces, then the end.
pub fn replay(answer: &CachedAnswer) -> EventStream {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let chars: Vec<char> = answer.text.chars().collect();
    for piece in chars.chunks(8) {
        let _ = tx.send(Ok(GenEvent::Token { text: piece.iter().collect(), info: None }));
    }
    let finish_reason = if answer.finish_reason == "length" { FinishReason::Length } else { FinishReason::Stop };
    let done =
        Finished { finish_reason, prompt_tokens: answer.prompt_tokens, completion_tokens: answer.completion_tokens };
    let _ = tx.send(Ok(GenEvent::Done(done)));
    rx
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
        finish_reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        moderated: bool,
    ) {
        let complete = finish_reason == FinishReason::Stop
            || (finish_reason == FinishReason::Length && completion_tokens == self.max_tokens);
        if !self.store || moderated || !complete {
            return;
        }
        let answer = CachedAnswer {
            text,
            finish_reason: finish_reason.as_str().to_string(),
            prompt_tokens,
            completion_tokens,
            question: self.semantic.as_ref().map(|(_, q)| q.clone()),
            created: crate::routes::unix_time(),
        };
        let write = self.cache.writes().begin();
        tokio::spawn(async move {
            let _write = write;
            let semantic = match (&self.semantic, self.embedding) {
                (Some((context, question)), Some(embedding)) => Some((context.as_str(), question.as_str(), embedding)),
                _ => None,
            };
            let _ = self.cache.put(&self.model_version, &self.store_key, &answer, semantic).await;
        });
    }
}
