//! `POST /v1/embeddings`: a string or a list of strings; `encoding_format` float (default)
//! or base64 (little-endian f32, what the official client asks for by default).

use super::Body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::embeddings::{Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, Vector};
use crate::wire::errors::EmbeddingErrors;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;

#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body(content = EmbeddingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One embedding per input, in order", body = EmbeddingList),
        EmbeddingErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn embeddings(
    State(state): State<AppState>,
    Body(body): Body<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let Some(embedder) = state.embedder.clone().filter(|e| e.model_id() == body.model) else {
        let served = state.embedder.as_ref().map_or("no embedding model", |e| e.model_id());
        return Err(ApiError::model_not_found(&body.model, served));
    };
    let model = body.model.clone();
    let (inputs, base64) = body.validate()?;
    // The encoder is compute-bound: keep it off the async workers.
    let (vectors, tokens) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        embedder.embed(&refs)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)?;
    let prompt_tokens: usize = tokens.iter().sum();
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            };
            Embedding { object: "embedding", index, embedding }
        })
        .collect();
    let usage = EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens };
    Ok(Json(EmbeddingList { object: "list", data, model: &model, usage }).into_response())
}
