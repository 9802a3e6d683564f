//! The server's one error type, and the one place errors become HTTP responses (OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` shape) and metric labels.

use crate::backend::BackendError;
use crate::wire::errors::{ErrorBody, ErrorDetail};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400 for a field with a bad value; the message names the field and what is allowed.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.to_string());
        e.code = Some("invalid_value");
        e
    }

    /// 400 for a prompt or message the guard refused: names the entity type or lexicon
    /// category and the rule, never the matched text. `code` is `pii_blocked` for PII,
    /// `content_blocked` for lexicon terms.
    pub fn blocked(param: &str, blocked: &luodi_guard::Blocked) -> Self {
        let pii = blocked.subject.parse::<luodi_guard::EntityType>().is_ok();
        let what = if pii {
            format!("it contains personal data of type {}", blocked.subject)
        } else {
            format!("it contains terms of the blocked category `{}`", blocked.subject)
        };
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("`{param}` was refused by the content guard: {what} (rule {})", blocked.rule),
        );
        e.param = Some(param.to_string());
        e.code = Some(if pii { "pii_blocked" } else { "content_blocked" });
        e
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.code = Some("invalid_json");
        e
    }

    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or invalid API key: send `Authorization: Bearer <key>`",
        );
        e.code = Some("invalid_api_key");
        e
    }

    pub fn model_not_found(model: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model `{model}` does not exist; this server serves `{served}`"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body is larger than the limit of {limit} bytes"),
        );
        e.code = Some("request_too_large");
        e
    }

    pub fn overloaded(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "the server is busy: the request queue is full",
        );
        e.code = Some("queue_full");
        e.retry_after = Some(retry_after);
        e
    }

    /// The request's deadline passed before its first token (it waited too long in the queue).
    pub fn timed_out() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the request timed out before generation started (the server is overloaded)",
        );
        e.code = Some("timeout");
        e.retry_after = Some(1);
        e
    }

    pub fn not_ready() -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the model is not loaded yet");
        e.code = Some("not_ready");
        e.retry_after = Some(1);
        e
    }

    /// 503 for an admin operation on a store that is down (requests never see this: they are
    /// served without the cache).
    pub fn store_unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::warn!(store = what, error = %detail, "store unavailable");
        let mut e =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", format!("the {what} is unavailable: {detail}"));
        e.code = Some("store_unavailable");
        e.retry_after = Some(2);
        e
    }

    /// 403: the key is valid but its role is not enough.
    pub fn forbidden(role: luodi_store::Role, needed: luodi_store::Role) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("this API key's role is `{}`; this route needs `{}` or above", role.as_str(), needed.as_str()),
        );
        e.code = Some("insufficient_role");
        e
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no route for {path}"))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method not allowed on this route")
    }

    /// 5xx: details go to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error; see the server log")
    }

    /// Metric label for this error.
    pub fn label(&self) -> &'static str {
        self.code.unwrap_or(self.kind)
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotReady => ApiError::not_ready(),
            BackendError::Overloaded { retry_after } => ApiError::overloaded(retry_after),
            BackendError::TimedOut => ApiError::timed_out(),
            BackendError::ContextOverflow { prompt_tokens, max_tokens, context_length } => {
                let mut err = ApiError::invalid(
                    "messages",
                    format!(
                        "this model's maximum context length is {context_length} tokens; the request has {prompt_tokens} prompt tokens and asks for {max_tokens} completion tokens"
                    ),
                );
                err.code = Some("context_length_exceeded");
                err
            }
            BackendError::InvalidParameter { field, message } => {
                ApiError::invalid(&field, format!("`{field}` {message}"))
            }
            BackendError::Template(message) => ApiError::invalid("messages", message),
            BackendError::KvBudgetExceeded(message) => {
                let mut err = ApiError::invalid("messages", message);
                err.code = Some("context_length_exceeded");
                err
            }
            BackendError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl ApiError {
    pub fn body(&self) -> serde_json::Value {
        let detail =
            ErrorDetail { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code };
        serde_json::to_value(ErrorBody { error: detail }).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(ErrorLabel(self.label()));
        resp
    }
}

/// Carried on error responses so the metrics layer can count errors by kind.
#[derive(Clone, Copy)]
pub struct ErrorLabel(pub &'static str);
