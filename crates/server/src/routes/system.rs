//! `GET /health`, `/ready`, `/metrics`, `/v1/models`.

use super::unix_time;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::errors::ErrorBody;
use crate::wire::system::{Health, Model, ModelList, Ready};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Json;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses((status = 200, description = "The process answers", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the model is loaded and the engine thread runs.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "system",
    responses(
        (status = 200, description = "The model is loaded; queue sizes", body = Ready),
        (status = 503, description = "The model is not loaded yet; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.backend.is_ready() {
        return Err(ApiError::not_ready());
    }
    let (waiting, running) = state.backend.load();
    // The store is not needed to answer: a store still connecting is reported, not a 503.
    let store = state.recorder.as_ref().map_or("off", |r| r.link().state());
    let ready = Ready {
        status: "ready",
        model: state.backend.model_id(),
        waiting: waiting as u64,
        running: running as u64,
        store,
    };
    Ok(Json(ready).into_response())
}

/// The served models: the generation model, and the embedding model if any.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses(
        (status = 200, description = "The served models", body = ModelList),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn models(State(state): State<AppState>) -> Response {
    let created = unix_time();
    let mut ids = vec![state.backend.model_id()];
    ids.extend(state.embedder.as_ref().map(|e| e.model_id()));
    let data = ids.into_iter().map(|id| Model { id, object: "model", created, owned_by: "luodi" }).collect();
    Json(ModelList { object: "list", data }).into_response()
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (waiting, running) = state.backend.load();
    metrics::gauge!("luodi_requests_waiting").set(waiting as f64);
    metrics::gauge!("luodi_requests_running").set(running as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
