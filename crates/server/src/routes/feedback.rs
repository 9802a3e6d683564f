//! `POST /v1/feedback`, `GET /v1/interactions` and `GET /v1/interactions/{id}`: ratings and
//! corrections on answered requests, and the stored interactions to review.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use luodi_store::{Filter, NewFeedback, StoreError};
use serde_json::Value;
use std::collections::HashMap;

use super::Body;
use crate::wire::errors::StoreErrors;
use crate::wire::feedback::{FeedbackRequest, InteractionList};

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UnknownRequest(id) => {
            let mut err = ApiError::invalid("request_id", format!("no interaction with request id `{id}`"));
            err.status = StatusCode::NOT_FOUND;
            err.code = Some("unknown_request_id");
            err
        }
        StoreError::Invalid { field, message } => ApiError::invalid(field, format!("`{field}` {message}")),
        StoreError::Database(e) => ApiError::store_unavailable("interaction store", e),
    }
}

fn recorder(state: &AppState) -> Result<&crate::recorder::Recorder, ApiError> {
    state.recorder.as_ref().ok_or_else(|| {
        let mut e = ApiError::not_found("/v1/feedback");
        e.message = "this server has no interaction store (store.enabled = false)".into();
        e
    })
}

/// The store, or a 503 while it is still connecting.
fn store(recorder: &crate::recorder::Recorder) -> Result<luodi_store::Store, ApiError> {
    recorder.store().ok_or_else(|| ApiError::store_unavailable("interaction store", "not connected yet"))
}

/// Records feedback on an answered request.
#[utoipa::path(
    post,
    path = "/v1/feedback",
    tag = "luodi",
    request_body(content = FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The stored feedback (an earlier one by the same reviewer on the same request is superseded, and kept)", body = Object),
        StoreErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn feedback(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Body(body): Body<FeedbackRequest>,
) -> Result<Response, ApiError> {
    let recorder = recorder(&state)?;
    let checked = body.validate()?;
    // The reviewer is the API key when there is one; a `reviewer` name is for keyless setups.
    let key_id = caller.and_then(|c| c.0.key_id);
    let reviewer = match (key_id, checked.reviewer) {
        (Some(key), _) => key,
        (None, Some(name)) if !name.trim().is_empty() => name.trim().to_string(),
        (None, _) => "anonymous".to_string(),
    };
    let new = NewFeedback {
        request_id: checked.request_id,
        reviewer,
        rating: checked.rating,
        correction: checked.correction,
        comment: checked.comment,
        labels: checked.labels,
    };
    let db = store(recorder)?;
    let stored = match db.add_feedback(&new).await {
        // The answer may still be in the write buffer: flush it and look again.
        Err(StoreError::UnknownRequest(_)) => {
            recorder.flush().await;
            db.add_feedback(&new).await
        }
        other => other,
    }
    .map_err(store_error)?;
    metrics::counter!("luodi_feedback_total").increment(1);
    Ok((StatusCode::CREATED, Json(serde_json::to_value(stored).map_err(ApiError::internal)?)).into_response())
}

fn parse_filter(q: &HashMap<String, String>) -> Result<(Filter, Option<String>, usize), ApiError> {
    let int = |name: &'static str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| ApiError::invalid(name, format!("`{name}` must be an integer, got `{v}`")))
            })
            .transpose()
    };
    let boolean = |name: &'static str| -> Result<Option<bool>, ApiError> {
        q.get(name)
            .map(|v| match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::invalid(name, format!("`{name}` must be true or false, got `{v}`"))),
            })
            .transpose()
    };
    for key in q.keys() {
        if !matches!(
            key.as_str(),
            "since"
                | "until"
                | "max_rating"
                | "min_rating"
                | "has_correction"
                | "reviewed"
                | "model_version"
                | "q"
                | "cursor"
                | "limit"
        ) {
            return Err(ApiError::invalid(key, format!("unknown query parameter `{key}`")));
        }
    }
    let limit = match int("limit")? {
        None => 50,
        Some(n) if (1..=500).contains(&n) => n as usize,
        Some(n) => return Err(ApiError::invalid("limit", format!("`limit` must be in [1, 500], got {n}"))),
    };
    let filter = Filter {
        since_ms: int("since")?,
        until_ms: int("until")?,
        max_rating: int("max_rating")?,
        min_rating: int("min_rating")?,
        has_correction: boolean("has_correction")?,
        reviewed: boolean("reviewed")?,
        model_version: q.get("model_version").cloned(),
        text: q.get("q").cloned(),
    };
    Ok((filter, q.get("cursor").cloned(), limit))
}

/// Lists stored interactions, newest first, with their current feedback.
#[utoipa::path(
    get,
    path = "/v1/interactions",
    tag = "luodi",
    params(
        ("since" = Option<i64>, Query, description = "Unix ms, inclusive"),
        ("until" = Option<i64>, Query, description = "Unix ms, exclusive"),
        ("max_rating" = Option<i64>, Query, description = "Only with a current rating at most this"),
        ("min_rating" = Option<i64>, Query, description = "Only with a current rating at least this"),
        ("has_correction" = Option<bool>, Query, description = "With or without a current correction"),
        ("reviewed" = Option<bool>, Query, description = "With or without any current feedback"),
        ("model_version" = Option<String>, Query, description = "Exact model version"),
        ("q" = Option<String>, Query, description = "Text in the messages or the answer (case-insensitive)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1-500, default 50"),
    ),
    responses(
        (status = 200, description = "A page of interactions with their feedback", body = InteractionList),
        StoreErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn interactions(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let recorder = recorder(&state)?;
    let (filter, cursor, limit) = parse_filter(&q)?;
    let db = store(recorder)?;
    let page = db.list(&filter, cursor.as_deref(), limit).await.map_err(store_error)?;
    let mut data = Vec::with_capacity(page.items.len());
    for item in page.items {
        let feedback = db.feedback_for(&item.id).await.map_err(store_error)?;
        let mut v = serde_json::to_value(item).map_err(ApiError::internal)?;
        v["feedback"] = serde_json::to_value(feedback).map_err(ApiError::internal)?;
        data.push(v);
    }
    Ok(Json(InteractionList { object: "list", data, next_cursor: page.next_cursor }).into_response())
}

/// One stored interaction with all its feedback (superseded included).
#[utoipa::path(
    get,
    path = "/v1/interactions/{id}",
    tag = "luodi",
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The interaction and its feedback", body = Object),
        StoreErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn interaction(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let recorder = recorder(&state)?;
    let db = store(recorder)?;
    let mut found = db.interaction(&id).await.map_err(store_error)?;
    if found.is_none() {
        recorder.flush().await;
        found = db.interaction(&id).await.map_err(store_error)?;
    }
    let item = found.ok_or_else(|| store_error(StoreError::UnknownRequest(id.clone())))?;
    let feedback = db.feedback_for(&id).await.map_err(store_error)?;
    let mut v = serde_json::to_value(item).map_err(ApiError::internal)?;
    v["feedback"] = serde_json::to_value(feedback).map_err(ApiError::internal)?;
    Ok(Json(v))
}
