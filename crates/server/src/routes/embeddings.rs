//! `POST /v1/embeddings`: a string or a list of strings; `encoding_format` float (default)
//! or base64 (little-endian f32, what the official client asks for by default).

use super::JsonObject;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::Fields;
use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

/// Inputs per request: bounds the work one request can queue.
const MAX_INPUTS: usize = 2048;

#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body(content = crate::openapi::EmbeddingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One embedding per input, in order", body = crate::openapi::EmbeddingList),
        (status = 400, description = "A field has a bad value or the body is not a JSON object", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 404, description = "`model` is not the served embedding model (or none is served)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::openapi::ErrorBody),
        (status = 500, description = "Internal error (details in the server log)", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn embeddings(State(state): State<AppState>, JsonObject(body): JsonObject) -> Result<Json<Value>, ApiError> {
    let f = Fields(&body);
    let model = f.required_string("model")?;
    let Some(embedder) = state.embedder.clone().filter(|e| e.model_id() == model) else {
        let served = state.embedder.as_ref().map_or("no embedding model", |e| e.model_id());
        return Err(ApiError::model_not_found(&model, served));
    };
    let inputs: Vec<String> = match f.0.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_INPUTS => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::invalid("input", "`input` must be a string or a list of strings"))?,
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::invalid("input", "`input` must not be an empty list"))
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid("input", format!("`input` may hold at most {MAX_INPUTS} strings")))
        }
        _ => return Err(ApiError::invalid("input", "`input` is required: a string or a list of strings")),
    };
    let base64 = match f.string("encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be float or base64, got `{other}`"),
            ))
        }
    };
    if let Some(d) = f.integer("dimensions", 1, u64::MAX)? {
        return Err(ApiError::invalid(
            "dimensions",
            format!("`dimensions` is not supported (this model gives 384; got {d})"),
        ));
    }
    // The encoder is compute-bound: keep it off the async workers.
    let (vectors, tokens) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        embedder.embed(&refs)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)?;
    let prompt_tokens: usize = tokens.iter().sum();
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })))
}
