//! `POST /generate`: the plain contract many internal services call:
//! `{"prompt": "...", "max_length": 100}` -> `{"response": "..."}`.
//! The prompt is the user's message (chat template applied when the model has one) unless
//! `"raw": true`; OpenAI sampling fields are accepted too.

use super::{caller_key_id, request_id, Body};
use crate::auth::Caller;
use crate::caching::CacheDirectives;
use crate::error::ApiError;
use crate::pipeline::{self, Ask, Route};
use crate::state::AppState;
use crate::wire::errors::GenerationErrors;
use crate::wire::generate::{GenerateRequest, GenerateResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[utoipa::path(
    post,
    path = "/generate",
    tag = "luodi",
    request_body(content = GenerateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The generated text", body = GenerateResponse),
        GenerationErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    Body(body): Body<GenerateRequest>,
) -> Result<Response, ApiError> {
    let gen = body.validate(state.backend.context_length(), state.chat_template)?;
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
    Ok(Json(GenerateResponse {
        response: &whole.text,
        finish_reason: whole.done.finish_reason.as_str(),
        prompt_tokens: whole.done.prompt_tokens,
        completion_tokens: whole.done.completion_tokens,
    })
    .into_response())
}
