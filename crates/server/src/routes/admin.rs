//! `GET /admin/cache/stats` and `POST /admin/cache/purge`: the response cache's state, and
//! removing entries (one model version's, or all).

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// The cache's store, mode, entries and bounds.
#[utoipa::path(
    get,
    path = "/admin/cache/stats",
    tag = "luodi",
    responses(
        (status = 200, description = "Store (`memory` or `redis`), mode, entries, bytes and bounds; `enabled: false` when the cache is off", body = Object),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The Redis store is unavailable; see `Retry-After`", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn cache_stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(cache) = &state.cache else {
        return Ok(Json(json!({"enabled": false})));
    };
    let stats = cache.stats().await.map_err(|e| ApiError::store_unavailable("response cache", e))?;
    let mut v = serde_json::to_value(stats).map_err(ApiError::internal)?;
    v["enabled"] = json!(true);
    v["model_version"] = json!(state.model_version);
    Ok(Json(v))
}

/// Removes cached answers: `{"model_version": "..."}` for one version's, or an empty body (or
/// `{}`) for all of this server's cache.
#[utoipa::path(
    post,
    path = "/admin/cache/purge",
    tag = "luodi",
    request_body(content = Object, description = "`{\"model_version\": \"smollm2-135m@<sha256>\"}` or `{}` for all", content_type = "application/json"),
    responses(
        (status = 200, description = "How many entries were removed", body = Object),
        (status = 400, description = "The body is not a JSON object, or `model_version` is not a string", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The Redis store is unavailable; see `Retry-After`", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn cache_purge(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let version = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let object = crate::validate::parse_object(&body)?;
        for key in object.keys() {
            if key != "model_version" {
                return Err(ApiError::invalid(key, format!("unknown field `{key}`; expected `model_version`")));
            }
        }
        match object.get("model_version") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) if !v.is_empty() => Some(v.clone()),
            Some(_) => {
                return Err(ApiError::invalid(
                    "model_version",
                    "`model_version` must be a non-empty string, e.g. the one /admin/cache/stats shows",
                ))
            }
        }
    };
    let Some(cache) = &state.cache else {
        return Ok(Json(json!({"enabled": false, "removed": 0})));
    };
    let removed =
        cache.purge(version.as_deref()).await.map_err(|e| ApiError::store_unavailable("response cache", e))?;
    tracing::info!(removed, model_version = version.as_deref().unwrap_or("all"), "cache purged");
    Ok(Json(json!({"enabled": true, "removed": removed, "model_version": version})))
}
