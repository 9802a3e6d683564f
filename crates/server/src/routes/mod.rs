//! HTTP handlers, one file per family of endpoints.

pub mod admin;
pub mod completions;
pub mod console;
pub mod embeddings;
pub mod feedback;
pub mod generate;
pub mod system;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::pipeline::ChosenStyle;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;

/// A JSON body as the wire type `T`; malformed JSON, bad fields and over-limit bodies
/// become OpenAI-shaped errors.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: crate::wire::Request> FromRequest<S> for Body<T> {
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
        Ok(Body(crate::wire::parse(&bytes)?))
    }
}

/// The configured body limit, for the 413 message.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The answer style: from the body's `style`, else the `x-luodi-style` header, else the
/// API key's (`key_styles`); an unknown name is a 400 listing the known ones.
pub fn choose_style(
    state: &AppState,
    style: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<ChosenStyle>, ApiError> {
    let (name, param) = match (style, headers.get("x-luodi-style")) {
        (Some(name), _) => (Some(name.to_string()), "style"),
        (None, Some(h)) => {
            let name = h.to_str().map_err(|_| ApiError::invalid("x-luodi-style", "`x-luodi-style` must be text"))?;
            (Some(name.trim().to_string()), "x-luodi-style")
        }
        (None, None) => (state.guard.key_style(crate::auth::bearer(headers)).map(str::to_string), "key_styles"),
    };
    match name {
        Some(name) => Ok(Some(ChosenStyle { text: state.guard.style(&name, param)?.to_string(), name })),
        None => Ok(None),
    }
}

/// The caller's key id, as authentication put it into the request.
pub fn caller_key_id(caller: &Option<axum::Extension<Caller>>) -> Option<String> {
    caller.as_ref().and_then(|c| c.0.key_id.clone())
}

/// The request id the request-id layer set (for guard logs).
pub fn request_id(headers: &axum::http::HeaderMap) -> &str {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-")
}

pub fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
