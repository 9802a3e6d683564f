//! The router and its layers: request ids, API keys, body limit, metrics, errors for
//! unknown routes.

use crate::error::{ApiError, ErrorLabel};
use crate::routes::{self, BodyLimit};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use crate::auth::{ApiKeys, KeyRing, Role};

pub fn router(state: AppState, keys: ApiKeys) -> Router {
    let limit = state.config.max_body_bytes;
    let inference = Router::new()
        .route("/v1/chat/completions", post(routes::completions::chat))
        .route("/v1/completions", post(routes::completions::completions))
        .route("/v1/models", get(routes::system::models))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/generate", post(routes::generate::generate));
    let review = Router::new()
        .route("/v1/feedback", post(routes::feedback::feedback))
        .route("/v1/interactions", get(routes::feedback::interactions))
        .route("/v1/interactions/{id}", get(routes::feedback::interaction))
        .route_layer(middleware::from_fn(|req, next| crate::auth::require_role(Role::Reviewer, req, next)));
    let admin = Router::new()
        .route("/admin/cache/stats", get(routes::admin::cache_stats))
        .route("/admin/cache/purge", post(routes::admin::cache_purge))
        .route_layer(middleware::from_fn(|req, next| crate::auth::require_role(Role::Admin, req, next)));
    let api = inference
        .merge(review)
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(keys, crate::auth::require_key));
    Router::new()
        .route("/health", get(routes::system::health))
        .route("/ready", get(routes::system::ready))
        .route("/metrics", get(routes::system::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        // The page itself holds no data; its API calls carry the reviewer's key.
        .route("/console", get(routes::console::console))
        .merge(api)
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        .layer(middleware::from_fn(log_request))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("luodi_http_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("luodi_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Some(ErrorLabel(kind)) = resp.extensions().get::<ErrorLabel>() {
        metrics::counter!("luodi_http_errors_total", "kind" => *kind).increment(1);
    }
    resp
}

/// One log line per request, with its id; API keys never appear (headers are not logged).
async fn log_request(req: Request, next: Next) -> Response {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let resp = {
        let _enter = span.enter();
        tracing::debug!(%method, %path, "request");
        drop(_enter);
        next.run(req).await
    };
    tracing::info!(request_id = %id, %method, %path, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "done");
    resp
}
