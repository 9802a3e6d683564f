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
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the model is loaded and the engine thread runs.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.backend.is_ready() {
        return Err(ApiError::not_ready());
    }
    let (waiting, running) = state.backend.load();
    Ok(Json(json!({"status": "ready", "model": state.backend.model_id(), "waiting": waiting, "running": running})))
}

pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let created = unix_time();
    let mut ids = vec![state.backend.model_id()];
    ids.extend(state.embedder.as_ref().map(|e| e.model_id()));
    let data: Vec<Value> =
        ids.iter().map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "luodi"})).collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (waiting, running) = state.backend.load();
    metrics::gauge!("luodi_requests_waiting").set(waiting as f64);
    metrics::gauge!("luodi_requests_running").set(running as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
