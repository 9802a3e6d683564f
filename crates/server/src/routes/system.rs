//! `GET /health`, `/ready`, `/metrics`, `/v1/models`.

use super::unix_time;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses((status = 200, description = "The process answers", body = crate::openapi::Health))
)]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the model is loaded and the engine thread runs.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "system",
    responses(
        (status = 200, description = "The model is loaded; queue sizes", body = crate::openapi::Ready),
        (status = 503, description = "The model is not loaded yet; see `Retry-After`", body = crate::openapi::ErrorBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.backend.is_ready() {
        return Err(ApiError::not_ready());
    }
    let (waiting, running) = state.backend.load();
    // The store is not needed to answer: a store still connecting is reported, not a 503.
    let store = state.recorder.as_ref().map_or("off", |r| r.link().state());
    Ok(Json(json!({
        "status": "ready", "model": state.backend.model_id(), "waiting": waiting, "running": running, "store": store,
    })))
}

/// The served models: the generation model, and the embedding model if any.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses(
        (status = 200, description = "The served models", body = crate::openapi::ModelList),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let created = unix_time();
    let mut ids = vec![state.backend.model_id()];
    ids.extend(state.embedder.as_ref().map(|e| e.model_id()));
    let data: Vec<Value> =
        ids.iter().map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "luodi"})).collect();
    Json(json!({"object": "list", "data": data}))
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
