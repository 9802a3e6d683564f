//! Every error body (OpenAI's shape), and the error responses the endpoints share, declared
//! once for `/openapi.json`.
#![allow(dead_code)] // The response enums only describe; `ApiError` is what handlers return.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// Every error, in OpenAI's shape.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    pub message: &'a str,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The offending field, e.g. `top_p` or `messages[0].role`.
    #[schema(required = true)]
    pub param: Option<&'a str>,
    /// e.g. `invalid_value`, `invalid_json`, `model_not_found`, `context_length_exceeded`,
    /// `pii_blocked`, `content_blocked`, `queue_full`.
    #[schema(required = true)]
    pub code: Option<&'a str>,
}

/// The errors of the generating endpoints (chat, completions, `/generate`).
#[derive(IntoResponses)]
pub enum GenerationErrors<'a> {
    /// A field has a bad value (named in `param`), the body is not a JSON object, the prompt
    /// does not fit the context, the guard refused the input (`code`: `pii_blocked`,
    /// `content_blocked`), or `style` names no configured style
    #[response(status = 400)]
    BadRequest(ErrorBody<'a>),
    /// Missing or wrong API key (only when the server has API keys)
    #[response(status = 401)]
    Unauthorized(ErrorBody<'a>),
    /// The API key's role may not use this route
    #[response(status = 403)]
    Forbidden(ErrorBody<'a>),
    /// `model` is not the served model
    #[response(status = 404)]
    NotFound(ErrorBody<'a>),
    /// The body is larger than the configured limit
    #[response(status = 413)]
    TooLarge(ErrorBody<'a>),
    /// The request queue is full; see `Retry-After`
    #[response(status = 429)]
    Busy(ErrorBody<'a>),
    /// Internal error (details in the server log)
    #[response(status = 500)]
    Internal(ErrorBody<'a>),
    /// The model is not loaded yet, or the request waited past its deadline; see `Retry-After`
    #[response(status = 503)]
    Unavailable(ErrorBody<'a>),
}

/// The errors of `/v1/embeddings`.
#[derive(IntoResponses)]
pub enum EmbeddingErrors<'a> {
    /// A field has a bad value (named in `param`) or the body is not a JSON object
    #[response(status = 400)]
    BadRequest(ErrorBody<'a>),
    /// Missing or wrong API key (only when the server has API keys)
    #[response(status = 401)]
    Unauthorized(ErrorBody<'a>),
    /// The API key's role may not use this route
    #[response(status = 403)]
    Forbidden(ErrorBody<'a>),
    /// `model` is not the served embedding model (or none is served)
    #[response(status = 404)]
    NotFound(ErrorBody<'a>),
    /// The body is larger than the configured limit
    #[response(status = 413)]
    TooLarge(ErrorBody<'a>),
    /// Internal error (details in the server log)
    #[response(status = 500)]
    Internal(ErrorBody<'a>),
}

/// The errors of the routes that read or write the interaction store.
#[derive(IntoResponses)]
pub enum StoreErrors<'a> {
    /// A field or query parameter has a bad value (named in `param`)
    #[response(status = 400)]
    BadRequest(ErrorBody<'a>),
    /// Missing or wrong API key (only when the server has API keys)
    #[response(status = 401)]
    Unauthorized(ErrorBody<'a>),
    /// The API key's role may not use this route
    #[response(status = 403)]
    Forbidden(ErrorBody<'a>),
    /// No such interaction, or the server has no store
    #[response(status = 404)]
    NotFound(ErrorBody<'a>),
    /// The body is larger than the configured limit
    #[response(status = 413)]
    TooLarge(ErrorBody<'a>),
    /// The store is unavailable or still connecting; see `Retry-After`
    #[response(status = 503)]
    Unavailable(ErrorBody<'a>),
}

/// The errors of the cache admin routes.
#[derive(IntoResponses)]
pub enum AdminErrors<'a> {
    /// The body is not a JSON object, or a field has a bad value
    #[response(status = 400)]
    BadRequest(ErrorBody<'a>),
    /// Missing or wrong API key (only when the server has API keys)
    #[response(status = 401)]
    Unauthorized(ErrorBody<'a>),
    /// The API key's role may not use this route
    #[response(status = 403)]
    Forbidden(ErrorBody<'a>),
    /// The body is larger than the configured limit
    #[response(status = 413)]
    TooLarge(ErrorBody<'a>),
    /// The Redis store is unavailable; see `Retry-After`
    #[response(status = 503)]
    Unavailable(ErrorBody<'a>),
}
