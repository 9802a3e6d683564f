//! The answering pipeline: the one path every transport's request takes once its handler has
//! parsed and validated it. It knows nothing of HTTP: a handler builds an [`Ask`], calls
//! [`answer`], and formats the [`AnswerStream`]'s events as JSON, SSE (or, later, gRPC).
//!
//! The steps, always in this order:
//! 1. input guard (PII actions, lexicons; a block is the caller's error, nothing is generated),
//! 2. style (the system message of the chosen answer style),
//! 3. cache lookup (exact, then semantic), for requests that may use the cache,
//! 4. backend submit, or replay of the cached answer through the same events,
//! 5. output filter (moderation, pseudonym restore, logprobs released with their text),
//! 6. cache store, of a complete answer nothing touched,
//! 7. record, in the interaction store, once, however the answer ends.
//!
//! Steps 5-7 run inside [`AnswerStream`]; a whole (non-streamed) answer drains the same
//! stream ([`AnswerStream::collect`]), so the two can never diverge.

mod stream;

pub use stream::{AnswerEvent, AnswerStream, WholeAnswer};

use crate::backend::GenRequest;
use crate::backend::{ChatMessage, Prompt};
use crate::caching::{self, CacheDirectives, CacheStatus};
use crate::error::ApiError;
use crate::guarding::apply_style;
use crate::recording::{Capture, Meta};
use crate::state::AppState;
use std::time::Instant;

/// Which endpoint family asked: part of cache keys and of the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Chat completions: messages, styles, the semantic cache.
    Chat,
    /// Text completions: a raw prompt.
    Text,
    /// The plain `/generate` contract (never cached).
    Generate,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Chat => "chat",
            Route::Text => "text",
            Route::Generate => "generate",
        }
    }
}

/// A style the handler resolved: its name (recorded) and its system-message text.
#[derive(Debug, Clone)]
pub struct ChosenStyle {
    pub name: String,
    pub text: String,
}

/// A parsed, validated request, independent of the transport it came by.
pub struct Ask {
    pub route: Route,
    pub gen: GenRequest,
    /// When the whole prompt came from one field (`prompt` of a text completion or of
    /// `/generate`), guard refusals name that field instead of `messages[i].content`.
    pub prompt_field: Option<&'static str>,
    pub style: Option<ChosenStyle>,
    pub cache: CacheDirectives,
    pub request_id: String,
    pub api_key_id: Option<String>,
}

/// Runs steps 1-4 and returns the answer as a stream of moderated events. Errors the
/// backend reports before its first event (a full queue, a context overflow) are returned
/// here, so every transport can still answer them as errors of the call.
pub async fn answer(state: &AppState, ask: Ask) -> Result<AnswerStream, ApiError> {
    let Ask { route, mut gen, prompt_field, style, cache, request_id, api_key_id } = ask;
    let started = Instant::now();
    gen.deadline = state.config.request_timeout.map(|t| started + t);

    // 1. The guard sees every input before anything else does.
    let mut guard = state.guard.request(&request_id);
    match (&mut gen.prompt, prompt_field) {
        (Prompt::Raw(text), field) => *text = guard.check_input(field.unwrap_or("prompt"), text)?,
        (Prompt::Chat(messages), Some(field)) if messages.len() == 1 => {
            messages[0].content = guard.check_input(field, &messages[0].content)?
        }
        (Prompt::Chat(messages), _) => guard.check_messages(messages)?,
        (Prompt::Tokens(_), _) => {}
    }

    // 2. Style.
    if let (Some(style), Prompt::Chat(messages)) = (&style, &mut gen.prompt) {
        apply_style(messages, &style.text);
    }

    // 3. Cache: a text prompt is keyed as one user message under route `text`.
    let mut plan = match (route, &gen.prompt) {
        (Route::Generate, _) => None,
        (_, Prompt::Chat(messages)) => {
            caching::plan(state, cache, route, messages, style.as_ref().map(|s| s.text.as_str()), &gen, guard.touched())
        }
        (_, Prompt::Raw(text)) => {
            let message = [ChatMessage::new("user", text.as_str())];
            caching::plan(state, cache, route, &message, None, &gen, guard.touched())
        }
        (_, Prompt::Tokens(_)) => None,
    };
    let capture =
        Capture::new(state, Meta { request_id, api_key_id, style: style.map(|s| s.name) }, route.as_str(), &gen.prompt);

    // 4. Generate, or replay what the cache holds through the same events.
    let hit = match &mut plan {
        Some(p) => p.lookup().await,
        None => {
            if route != Route::Generate {
                caching::count_bypass();
            }
            None
        }
    };
    let (events, status, source, generated_since) = match hit {
        Some(hit) => {
            plan = None;
            (caching::replay(&hit.answer), hit.status, hit.source, None)
        }
        None => {
            let status = if plan.is_some() { CacheStatus::Miss } else { CacheStatus::Bypass };
            (state.backend.submit(gen)?, status, None, Some(started))
        }
    };
    let mut stream = AnswerStream::new(events, guard.output(), plan, capture, status, source, generated_since);
    stream.first_event().await?;
    Ok(stream)
}
