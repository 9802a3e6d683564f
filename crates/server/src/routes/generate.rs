//! `POST /generate`: the plain contract many internal services call:
//! `{"prompt": "...", "max_length": 100}` -> `{"response": "..."}`.
//! The prompt is the user's message (chat template applied when the model has one) unless
//! `"raw": true`; OpenAI sampling fields are accepted too.

use super::{caller_key_id, request_id, JsonObject};
use crate::auth::Caller;
use crate::backend::GenRequest;
use crate::backend::{ChatMessage, Prompt};
use crate::caching::CacheDirectives;
use crate::error::ApiError;
use crate::pipeline::{self, Ask, Route};
use crate::state::AppState;
use crate::validate::{self, Fields};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

#[utoipa::path(
    post,
    path = "/generate",
    tag = "luodi",
    request_body(content = crate::openapi::GenerateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The generated text", body = crate::openapi::GenerateResponse),
        (status = 400, description = "A field has a bad value, the body is not a JSON object, the prompt does not fit the context, or the guard refused the prompt (`code`: `pii_blocked`, `content_blocked`)", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::openapi::ErrorBody),
        (status = 429, description = "The request queue is full; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "The model is not loaded yet; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 500, description = "Internal error (details in the server log)", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let f = Fields(&body);
    let text = f.required_string("prompt")?;
    let raw = f.bool("raw")?.unwrap_or(false);
    let prompt = if raw || !state.chat_template {
        Prompt::Raw(text)
    } else {
        Prompt::Chat(vec![ChatMessage::new("user", text)])
    };
    let gen = GenRequest {
        prompt,
        max_tokens: validate::max_tokens(&f, &["max_length", "max_tokens"], state.backend.context_length(), 100)?,
        sampling: validate::sampling(&f)?,
        stop: f.stop()?,
        deadline: None,
        logprobs: false,
    };
    let ask = Ask {
        route: Route::Generate,
        gen,
        prompt_field: Some("prompt"),
        style: None,
        // /generate does not use the response cache.
        cache: CacheDirectives { lookup: false, store: false },
        request_id: request_id(&headers).to_string(),
        api_key_id: caller_key_id(&caller),
    };
    let whole = pipeline::answer(&state, ask).await?.collect().await?;
    Ok(Json(json!({
        "response": whole.text,
        "finish_reason": whole.done.finish_reason.as_str(),
        "prompt_tokens": whole.done.prompt_tokens,
        "completion_tokens": whole.done.completion_tokens,
    })))
}
