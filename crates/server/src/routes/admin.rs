//! `GET /admin/cache/stats` and `POST /admin/cache/purge`: the response cache's state, and
//! removing entries (one model version's, or all).

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::admin::{CacheStats, PurgeRequest, PurgeResult};
use crate::wire::errors::AdminErrors;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

/// The cache's store, mode, entries and bounds.
#[utoipa::path(
    get,
    path = "/admin/cache/stats",
    tag = "luodi",
    responses(
        (status = 200, description = "Store (`memory` or `redis`), mode, entries, bytes and bounds; `enabled: false` when the cache is off", body = CacheStats),
        AdminErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn cache_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(cache) = &state.cache else {
        return Ok(Json(CacheStats { enabled: false, model_version: None, stats: Value::Object(Default::default()) })
            .into_response());
    };
    let stats = cache.stats().await.map_err(|e| ApiError::store_unavailable("response cache", e))?;
    let stats = serde_json::to_value(stats).map_err(ApiError::internal)?;
    Ok(Json(CacheStats { enabled: true, model_version: Some(&state.model_version), stats }).into_response())
}

/// Removes cached answers: `{"model_version": "..."}` for one version's, or an empty body (or
/// `{}`) for all of this server's cache.
#[utoipa::path(
    post,
    path = "/admin/cache/purge",
    tag = "luodi",
    request_body(content = PurgeRequest, description = "`{\"model_version\": \"smollm2-135m@<sha256>\"}`, or `{}` or an empty body for all", content_type = "application/json"),
    responses(
        (status = 200, description = "How many entries were removed", body = PurgeResult),
        AdminErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn cache_purge(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let version = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        crate::wire::parse::<PurgeRequest>(&body)?.validate()?
    };
    let Some(cache) = &state.cache else {
        return Ok(Json(PurgeResult { enabled: false, removed: 0, model_version: None }).into_response());
    };
    let removed =
        cache.purge(version.as_deref()).await.map_err(|e| ApiError::store_unavailable("response cache", e))?;
    tracing::info!(removed, model_version = version.as_deref().unwrap_or("all"), "cache purged");
    Ok(Json(PurgeResult { enabled: true, removed, model_version: Some(version.as_deref()) }).into_response())
}
