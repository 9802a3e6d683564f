//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and the schemas below.
//!
//! The handlers parse raw JSON objects (see [`crate::validate`]); these types only describe
//! what that parsing accepts and what the handlers return. Ranges match `validate.rs`; a
//! bound that depends on the model (`max_tokens` up to the context length) is stated in the
//! field's description and answered with a 400 when exceeded. `null` counts as absent for
//! every optional field.

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "luodi",
        description = "OpenAI-compatible API (chat completions, completions, embeddings, models) plus \
                       the plain `/generate` contract, health, readiness and Prometheus metrics.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::completions::chat,
        crate::routes::completions::completions,
        crate::routes::embeddings::embeddings,
        crate::routes::system::models,
        crate::routes::generate::generate,
        crate::routes::feedback::feedback,
        crate::routes::feedback::interactions,
        crate::routes::feedback::interaction,
        crate::routes::admin::cache_stats,
        crate::routes::admin::cache_purge,
        crate::routes::system::health,
        crate::routes::system::ready,
        crate::routes::system::metrics,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "openai", description = "OpenAI-compatible endpoints"),
        (name = "luodi", description = "luodi's own endpoints"),
        (name = "system", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme: API keys from `--api-key`; when none are configured the
/// server accepts requests without one (hence the empty alternative on each operation).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>`, required when the server has API keys"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// The OpenAPI 3.1 document describing this server.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Json<Value> {
    Json(document().clone())
}

// ---------------------------------------------------------------------------------------
// Requests

/// A chat message's role; `developer` is treated as `system`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPartType {
    Text,
}

/// A content part; only text parts are supported.
#[derive(Serialize, ToSchema)]
pub struct TextPart {
    #[serde(rename = "type")]
    pub kind: TextPartType,
    pub text: String,
}

/// A string, or a list of text parts (concatenated).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<TextPart>),
}

/// One chat message. `content` may be absent or null only for `assistant` messages.
#[derive(Serialize, ToSchema)]
pub struct ChatMessage {
    pub role: Role,
    pub content: Option<MessageContent>,
}

#[derive(Serialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and `usage: null` on the others).
    pub include_usage: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatType {
    Text,
}

/// Only `{"type": "text"}` is supported.
#[derive(Serialize, ToSchema)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: ResponseFormatType,
}

/// `stop`: a string or a list of at most 4 strings.
fn stop_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).max_items(Some(4)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("Stop sequences: a string or a list of at most 4 strings"))
}

/// Completions `prompt`: a string, or a list holding exactly one string.
fn prompt_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .min_items(Some(1))
                .max_items(Some(1)),
        )
        .description(Some("The prompt: a string, or a list of exactly one string"))
}

/// Embeddings `input`: a string or a list of 1 to 2048 strings.
fn input_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .min_items(Some(1))
                .max_items(Some(2048)),
        )
        .description(Some("A string, or a list of 1 to 2048 strings"))
}

/// `POST /v1/chat/completions`. Unsupported OpenAI fields (`tools`, `functions`,
/// `tool_choice`, `function_call`, `audio`, `modalities`, `prediction`) are refused with a
/// 400 rather than ignored.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Must be the served model's id (see `/v1/models`); another id is a 404.
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// At most the model's context length.
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    /// Wins over `max_tokens`. At most the model's context length; default 512.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u64>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Any 64-bit integer.
    pub seed: Option<i64>,
    #[schema(schema_with = stop_schema)]
    pub stop: Option<Value>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    /// Needs `logprobs: true`.
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<u64>,
    /// Only one choice per request.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
    pub user: Option<String>,
    /// Answer with server-sent events (`text/event-stream`).
    pub stream: Option<bool>,
    /// Only with `stream: true`.
    pub stream_options: Option<StreamOptions>,
    pub response_format: Option<ResponseFormat>,
    /// luodi extension: a configured answer style (`[styles.NAME]`), added as a system message;
    /// also accepted as the `x-luodi-style` header. Unknown names are a 400 listing the known ones.
    pub style: Option<String>,
    /// luodi extension: keep the k most likely tokens (0: off).
    #[schema(minimum = 0, maximum = 1000000)]
    pub top_k: Option<u64>,
    /// luodi extension: drop tokens below `min_p` times the top probability.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f64>,
    /// luodi extension: penalty for repeated tokens (1: off).
    #[schema(exclusive_minimum = 0.0, maximum = 10.0)]
    pub repetition_penalty: Option<f64>,
}

/// `POST /v1/completions`. `suffix`, `echo` and `best_of` are refused with a 400.
#[derive(Serialize, ToSchema)]
pub struct CompletionRequest {
    /// Must be the served model's id; another id is a 404.
    pub model: String,
    #[schema(schema_with = prompt_schema)]
    pub prompt: Value,
    /// At most the model's context length; default 16.
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    #[schema(schema_with = stop_schema)]
    pub stop: Option<Value>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    /// Number of most likely alternatives to return per token.
    #[schema(minimum = 0, maximum = 20)]
    pub logprobs: Option<u64>,
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub top_k: Option<u64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 10.0)]
    pub repetition_penalty: Option<f64>,
}

/// `POST /generate`: `{"prompt": "...", "max_length": 100}` -> `{"response": "..."}`.
#[derive(Serialize, ToSchema)]
pub struct GenerateRequest {
    /// The user's message; the chat template is applied unless `raw` (or the model has none).
    pub prompt: String,
    /// Tokens to generate, at most the model's context length; default 100.
    #[schema(minimum = 1)]
    pub max_length: Option<u64>,
    /// Alias of `max_length` (used when `max_length` is absent).
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    /// Send the prompt as is, without the chat template.
    pub raw: Option<bool>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    #[schema(schema_with = stop_schema)]
    pub stop: Option<Value>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub top_k: Option<u64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 10.0)]
    pub repetition_penalty: Option<f64>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// `POST /v1/embeddings`. `dimensions` is refused with a 400.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Must be the served embedding model's id; another id is a 404.
    pub model: String,
    #[schema(schema_with = input_schema)]
    pub input: Value,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<EncodingFormat>,
}

// ---------------------------------------------------------------------------------------
// Responses

#[derive(Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Serialize, ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// Present when `logprobs: true` was asked for, else null.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs>,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer.
    pub finish_reason: String,
}

/// A non-streaming chat completion (`object: "chat.completion"`).
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
pub struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f64>,
    pub top_logprobs: Vec<BTreeMap<String, f64>>,
}

#[derive(Serialize, ToSchema)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    #[schema(required = true)]
    pub logprobs: Option<TextLogprobs>,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer.
    pub finish_reason: String,
}

/// A non-streaming text completion (`object: "text_completion"`).
#[derive(Serialize, ToSchema)]
pub struct TextCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
pub struct GenerateResponse {
    pub response: String,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer.
    pub finish_reason: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A vector of floats, or (with `encoding_format: base64`) its little-endian f32 bytes in base64.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f64>),
    Base64(String),
}

#[derive(Serialize, ToSchema)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize, ToSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    pub model: String,
    /// Requests queued.
    pub waiting: u64,
    /// Requests generating.
    pub running: u64,
}

/// One server-sent event of a streaming answer (the schema describes each event).
#[derive(Serialize, ToSchema)]
pub struct ServerSentEvent {
    /// A chunk as JSON (`chat.completion.chunk` or `text_completion`; the last one carries
    /// `usage` when asked for), an error body as JSON if generation fails after the first
    /// token, or `[DONE]`.
    pub data: String,
    pub event: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, e.g. `top_p` or `messages[0].role`.
    #[schema(required = true)]
    pub param: Option<String>,
    /// e.g. `invalid_value`, `invalid_json`, `model_not_found`, `context_length_exceeded`.
    #[schema(required = true)]
    pub code: Option<String>,
}

/// Every error, in OpenAI's shape.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}
