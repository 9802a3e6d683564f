//! `POST /v1/chat/completions`: the request, the whole answer and the streamed chunk.

use super::logprobs::ChatLogprobs;
use super::rules::{Bound, Rules};
use super::sampling::{self, SamplingFields};
use super::system::{Absent, Usage};
use super::{pinpoint_part, PathError, Request};
use crate::backend::{ChatMessage, GenRequest, Prompt};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

const RULES: Rules = Rules {
    bounds: &[
        Bound::tokens("max_tokens"),
        Bound::tokens("max_completion_tokens"),
        Bound::integer("top_logprobs", 0.0, 20.0),
    ],
    expected: &[
        ("model", "a string: the served model's id"),
        ("messages", "a list of messages"),
        ("messages[]", "an object with `role` and `content`"),
        ("messages[].role", "system, developer, user or assistant"),
        ("messages[].content", "a string or a list of text parts ({\"type\": \"text\", \"text\": ...})"),
        ("messages[].name", "a string"),
        ("logprobs", "true or false"),
        ("user", "a string"),
        ("stream", "true or false"),
        ("stream_options", "an object: {\"include_usage\": true|false}"),
        ("stream_options.include_usage", "true or false"),
        ("response_format", "an object: {\"type\": \"text\"}"),
        ("response_format.type", "`text` (the only format supported)"),
        ("style", "the name of a configured style"),
        ("cache", "a boolean (false: neither answer from nor store in the response cache)"),
    ],
    refused: &["tools", "functions", "tool_choice", "function_call", "audio", "modalities", "prediction"],
};

/// `POST /v1/chat/completions`. Unsupported OpenAI fields (`tools`, `functions`,
/// `tool_choice`, `function_call`, `audio`, `modalities`, `prediction`) are refused with a
/// 400 rather than ignored; unknown fields are ignored, as OpenAI's clients send new ones.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Must be the served model's id (see `/v1/models`); another id is a 404.
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<MessageIn>,
    /// At most the model's context length.
    pub max_tokens: Option<u64>,
    /// Wins over `max_tokens`. At most the model's context length; default 512.
    pub max_completion_tokens: Option<u64>,
    pub logprobs: Option<bool>,
    /// Needs `logprobs: true`.
    pub top_logprobs: Option<u64>,
    pub user: Option<String>,
    /// Answer with server-sent events (`text/event-stream`).
    pub stream: Option<bool>,
    /// Only with `stream: true`.
    pub stream_options: Option<StreamOptions>,
    pub response_format: Option<ResponseFormat>,
    /// luodi extension: a configured answer style (`[styles.NAME]`), added as a system message;
    /// also accepted as the `x-luodi-style` header. Unknown names are a 400 listing the known ones.
    pub style: Option<String>,
    /// luodi extension: `false` neither answers from nor stores in the response cache
    /// (as `Cache-Control: no-store`).
    pub cache: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

impl Request for ChatCompletionRequest {
    const RULES: &'static [&'static Rules] = &[&RULES, &sampling::RULES];

    fn pinpoint(body: &Value) -> Option<PathError> {
        pinpoint_part::<SamplingFields>(body)
    }
}

/// A chat message's role; `developer` is treated as `system`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

/// One chat message. `content` may be absent or null only for `assistant` messages.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageIn {
    pub role: Role,
    pub content: Option<Content>,
    /// Accepted and ignored (OpenAI's participant name).
    pub name: Option<String>,
}

/// A string, or a list of text parts (concatenated).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<TextPart>),
}

/// A content part; only text parts are supported.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TextPart {
    #[serde(rename = "type")]
    pub kind: TextPartType,
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPartType {
    Text,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and `usage: null` on the others).
    pub include_usage: Option<bool>,
}

/// Only `{"type": "text"}` is supported.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: ResponseFormatType,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatType {
    Text,
}

/// What the chat endpoint asks of the pipeline, and how to answer.
#[derive(Debug)]
pub struct Chat {
    pub gen: GenRequest,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatCompletionRequest {
    /// The checks types cannot express; `context` bounds the token counts.
    pub fn validate(&self, context: usize) -> Result<Chat, ApiError> {
        let (stream, include_usage) = stream_fields(self.stream, &self.stream_options)?;
        let logprobs = self.logprobs.unwrap_or(false);
        let top_logprobs = bound("top_logprobs").check_int(self.top_logprobs, None)?.unwrap_or(0) as usize;
        if top_logprobs > 0 && !logprobs {
            return Err(ApiError::invalid("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
        }
        let max_tokens = match bound("max_completion_tokens").check_int(self.max_completion_tokens, Some(context))? {
            Some(n) => Some(n),
            None => bound("max_tokens").check_int(self.max_tokens, Some(context))?,
        };
        Ok(Chat {
            gen: GenRequest {
                prompt: Prompt::Chat(messages(&self.messages)?),
                max_tokens: max_tokens.map_or(512.min(context), |n| n as usize),
                sampling: self.sampling.sampling(top_logprobs)?,
                stop: self.sampling.stop()?,
                deadline: None,
                logprobs,
            },
            stream,
            include_usage,
        })
    }
}

fn bound(field: &str) -> &'static Bound {
    RULES.bound(field).expect("the chat rules bound this field")
}

fn messages(items: &[MessageIn]) -> Result<Vec<ChatMessage>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role {
                Role::System | Role::Developer => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let content = match &m.content {
                Some(Content::Text(s)) => s.clone(),
                Some(Content::Parts(parts)) => parts.iter().map(|p| p.text.as_str()).collect::<String>(),
                None if m.role == Role::Assistant => String::new(),
                None => {
                    let param = format!("messages[{i}].content");
                    return Err(ApiError::invalid(
                        &param,
                        format!("`{param}` is required: a string or a list of text parts"),
                    ));
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// `stream` and `stream_options.include_usage`, which is only allowed when streaming.
pub fn stream_fields(stream: Option<bool>, options: &Option<StreamOptions>) -> Result<(bool, bool), ApiError> {
    let stream = stream.unwrap_or(false);
    let include_usage = options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
    if include_usage && !stream {
        return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed with `stream: true`"));
    }
    Ok((stream, include_usage))
}

// ---------------------------------------------------------------------------------------
// Responses

/// A non-streaming chat completion (`object: "chat.completion"`).
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    /// `chat.completion`
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatChoice<'a>; 1],
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    /// Present when `logprobs: true` was asked for, else null.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs<'a>>,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer.
    pub finish_reason: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct AssistantMessage<'a> {
    /// `assistant`
    pub role: &'static str,
    pub content: &'a str,
}

/// One server-sent event of a streamed chat completion (`object: "chat.completion.chunk"`).
#[derive(Serialize, ToSchema)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    /// `chat.completion.chunk`
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    /// One choice; empty in the usage chunk.
    pub choices: Vec<ChunkChoice<'a>>,
    /// Only with `stream_options.include_usage`: null on every chunk but the last.
    #[serde(skip_serializing_if = "Absent::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Absent<Usage>,
}

#[derive(Serialize, ToSchema)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs<'a>>,
    /// Null until the last chunk.
    #[schema(required = true)]
    pub finish_reason: Option<&'static str>,
}

/// The new text; the first chunk carries the role, the last one is empty.
#[derive(Serialize, ToSchema, Default)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse;
    use serde_json::json;

    fn chat(v: Value) -> Result<Chat, ApiError> {
        parse::<ChatCompletionRequest>(v.to_string().as_bytes())?.validate(100)
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    #[test]
    fn minimal_request_gets_openai_defaults() {
        let r = chat(base()).unwrap();
        assert_eq!(r.gen.sampling.temperature, 1.0);
        assert_eq!(r.gen.max_tokens, 100, "bounded by the context");
        assert!(!r.stream);
    }

    #[test]
    fn errors_name_the_field() {
        for (field, value, needle) in [
            ("top_p", json!(0), "`top_p` must be in (0, 1], got 0"),
            ("top_p", json!("x"), "`top_p` must be a number in (0, 1], got `x`"),
            ("temperature", json!(3), "`temperature` must be in [0, 2]"),
            ("temperature", json!("hot"), "`temperature` must be a number in [0, 2], got `hot`"),
            ("max_tokens", json!(0), "`max_tokens` must be an integer in [1, 100], got 0"),
            ("max_tokens", json!(101), "`max_tokens` must be an integer in [1, 100]"),
            ("max_tokens", json!(1.5), "`max_tokens` must be an integer in [1, the context length], got 1.5"),
            ("top_k", json!(-1), "`top_k` must be an integer in [0, 1000000], got -1"),
            ("n", json!(2), "`n` must be 1"),
            ("stop", json!(["a", "b", "c", "d", "e"]), "at most 4"),
            ("stop", json!(5), "`stop` must be a string or a list of strings, got 5"),
            ("seed", json!("s"), "`seed` must be an integer"),
            ("presence_penalty", json!(-3), "`presence_penalty` must be in [-2, 2]"),
            ("top_logprobs", json!(3), "needs `logprobs: true`"),
            ("top_logprobs", json!(21), "`top_logprobs` must be an integer in [0, 20]"),
            ("logprobs", json!(1), "`logprobs` must be true or false"),
            ("tools", json!([]), "`tools` is not supported"),
            ("stream_options", json!({"include_usage": true}), "only allowed with `stream: true`"),
            ("stream_options", json!(1), "`stream_options` must be an object"),
            ("response_format", json!({"type": "json_object"}), "`response_format.type` must be `text`"),
            ("cache", json!("no"), "`cache` must be a boolean"),
            ("model", json!(5), "`model` must be a string"),
        ] {
            let err = chat(with(field, value)).err().unwrap_or_else(|| panic!("{field} should be rejected"));
            assert_eq!(err.status, 400);
            assert!(err.message.contains(needle), "{field}: {}", err.message);
            assert!(err.param.as_deref().unwrap_or("").starts_with(field), "{field}: param {:?}", err.param);
        }
    }

    #[test]
    fn null_is_absent() {
        let r = chat(with("temperature", Value::Null)).unwrap();
        assert_eq!(r.gen.sampling.temperature, 1.0);
    }

    #[test]
    fn messages_are_checked() {
        let err = chat(json!({"model": "m", "messages": []})).err().unwrap();
        assert!(err.message.contains("must not be empty"));
        let err = chat(json!({"model": "m"})).err().unwrap();
        assert_eq!(err.message, "`messages` is required: a list of messages");
        let err = chat(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        assert!(err.message.contains("must be system, developer, user or assistant, got `robot`"), "{}", err.message);
        let err = chat(json!({"model": "m", "messages": [{"role": "user"}]})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("messages[0].content"));
        let err = chat(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}))
            .err()
            .unwrap();
        assert_eq!(err.param.as_deref(), Some("messages[0].content"));
        let ok =
            chat(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "你好"}]}]}))
                .unwrap();
        assert!(matches!(ok.gen.prompt, Prompt::Chat(ref m) if m[0].content == "你好"));
        let ok = chat(json!({"model": "m", "messages": [{"role": "developer", "content": "x"}, {"role": "assistant", "content": null}]})).unwrap();
        assert!(matches!(ok.gen.prompt, Prompt::Chat(ref m) if m[0].role == "system" && m[1].content.is_empty()));
    }

    #[test]
    fn max_completion_tokens_wins() {
        let mut v = with("max_tokens", json!(10));
        v["max_completion_tokens"] = json!(20);
        assert_eq!(chat(v).unwrap().gen.max_tokens, 20);
    }

    #[test]
    fn negative_seeds_fold_into_u64() {
        assert_eq!(chat(with("seed", json!(-1))).unwrap().gen.sampling.seed, Some(u64::MAX));
        assert_eq!(chat(with("seed", json!(u64::MAX))).unwrap().gen.sampling.seed, Some(u64::MAX));
    }

    #[test]
    fn chunks_carry_usage_only_when_asked() {
        let chunk = |usage| ChatChunk {
            id: "c",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            choices: vec![],
            usage,
        };
        let v = serde_json::to_value(chunk(Absent::Omitted)).unwrap();
        assert!(v.get("usage").is_none());
        let v = serde_json::to_value(chunk(Absent::Null)).unwrap();
        assert!(v["usage"].is_null() && v.get("usage").is_some());
    }
}
