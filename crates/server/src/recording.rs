//! What is recorded about one answered request, and handing it to the [`Recorder`].

use crate::backend::Prompt;
use crate::caching::CacheStatus;
use crate::recorder::Recorder;
use crate::state::AppState;
use luodi_store::{GuardAction, Interaction};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Who asked and how, from the handler.
pub struct Meta {
    pub request_id: String,
    pub api_key_id: Option<String>,
    pub style: Option<String>,
}

/// A request being answered; becomes an [`Interaction`] when the answer ends.
pub struct Capture {
    recorder: Recorder,
    meta: Meta,
    route: &'static str,
    model_version: String,
    messages: Value,
    created_ms: i64,
    started: Instant,
}

/// How an answer ended, for the record.
pub struct Outcome {
    pub text: String,
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub ttft: Option<Duration>,
    pub cache: CacheStatus,
    pub guard: Vec<GuardAction>,
}

impl Capture {
    /// `None` when the server has no store.
    pub fn new(state: &AppState, meta: Meta, route: &'static str, prompt: &Prompt) -> Option<Capture> {
        let recorder = state.recorder.clone()?;
        let messages = match prompt {
            Prompt::Chat(m) => Value::Array(m.iter().map(|m| json!({"role": m.role, "content": m.content})).collect()),
            Prompt::Raw(text) => json!([{"role": "user", "content": text}]),
            Prompt::Tokens(ids) => json!([{"role": "user", "token_ids": ids}]),
        };
        let created_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Some(Capture {
            recorder,
            meta,
            route,
            model_version: state.model_version.clone(),
            messages,
            created_ms,
            started: Instant::now(),
        })
    }

    pub fn finish(self, o: Outcome) {
        self.recorder.record(Interaction {
            id: self.meta.request_id,
            created_ms: self.created_ms,
            api_key_id: self.meta.api_key_id,
            route: self.route.to_string(),
            model_version: self.model_version,
            style: self.meta.style,
            messages: self.messages,
            answer: o.text,
            finish_reason: o.finish_reason,
            prompt_tokens: o.prompt_tokens as i64,
            completion_tokens: o.completion_tokens as i64,
            ttft_ms: o.ttft.map(|d| d.as_secs_f64() * 1e3),
            latency_ms: self.started.elapsed().as_secs_f64() * 1e3,
            cache: o.cache.as_str().to_string(),
            guard: o.guard,
        });
    }
}
