//! `POST /v1/completions`: the request and the answer (whole, and each streamed chunk,
//! which OpenAI gives the same shape).

use super::chat::{stream_fields, StreamOptions};
use super::logprobs::TextLogprobs;
use super::rules::{Bound, Rules};
use super::sampling::{self, SamplingFields};
use super::system::{Absent, Usage};
use super::{pinpoint_part, PathError, Request};
use crate::backend::{GenRequest, Prompt};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

const RULES: Rules = Rules {
    bounds: &[Bound::tokens("max_tokens"), Bound::integer("logprobs", 0.0, 20.0)],
    expected: &[
        ("model", "a string: the served model's id"),
        ("prompt", "a string"),
        ("stream", "true or false"),
        ("stream_options", "an object: {\"include_usage\": true|false}"),
        ("stream_options.include_usage", "true or false"),
        ("user", "a string"),
        ("cache", "a boolean (false: neither answer from nor store in the response cache)"),
    ],
    refused: &["suffix", "echo", "best_of"],
};

/// `POST /v1/completions`. `suffix`, `echo` and `best_of` are refused with a 400.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// Must be the served model's id; another id is a 404.
    pub model: String,
    #[schema(schema_with = prompt_schema)]
    pub prompt: PromptIn,
    /// At most the model's context length; default 16.
    pub max_tokens: Option<u64>,
    /// Number of most likely alternatives to return per token.
    pub logprobs: Option<u64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    /// luodi extension: `false` neither answers from nor stores in the response cache.
    pub cache: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

impl Request for CompletionRequest {
    const RULES: &'static [&'static Rules] = &[&RULES, &sampling::RULES];

    fn pinpoint(body: &Value) -> Option<PathError> {
        pinpoint_part::<SamplingFields>(body)
    }
}

/// A string, or a list holding exactly one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    One(String),
    List(Vec<String>),
}

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

#[derive(Debug)]
pub struct Completion {
    pub gen: GenRequest,
    pub stream: bool,
    pub include_usage: bool,
}

impl CompletionRequest {
    pub fn validate(&self, context: usize) -> Result<Completion, ApiError> {
        let prompt = match &self.prompt {
            PromptIn::One(s) => s.clone(),
            PromptIn::List(list) if list.len() == 1 => list[0].clone(),
            PromptIn::List(_) => {
                return Err(ApiError::invalid("prompt", "`prompt` must be a string or a list of exactly one string"))
            }
        };
        let (stream, include_usage) = stream_fields(self.stream, &self.stream_options)?;
        let top = bound("logprobs").check_int(self.logprobs, None)?.map(|n| n as usize);
        let max_tokens = bound("max_tokens").check_int(self.max_tokens, Some(context))?;
        Ok(Completion {
            gen: GenRequest {
                prompt: Prompt::Raw(prompt),
                max_tokens: max_tokens.map_or(16.min(context), |n| n as usize),
                sampling: self.sampling.sampling(top.unwrap_or(0))?,
                stop: self.sampling.stop()?,
                deadline: None,
                logprobs: top.is_some(),
            },
            stream,
            include_usage,
        })
    }
}

fn bound(field: &str) -> &'static Bound {
    RULES.bound(field).expect("the completion rules bound this field")
}

/// A text completion (`object: "text_completion"`), whole or as one streamed chunk.
#[derive(Serialize, ToSchema)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    /// `text_completion`
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    /// One choice; empty in a stream's usage chunk.
    pub choices: Vec<TextChoice<'a>>,
    /// Always on whole answers; on chunks only with `stream_options.include_usage` (null but
    /// on the last).
    #[serde(skip_serializing_if = "Absent::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Absent<Usage>,
}

#[derive(Serialize, ToSchema)]
pub struct TextChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    #[schema(required = true)]
    pub logprobs: Option<TextLogprobs<'a>>,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer; null on
    /// chunks before the last.
    #[schema(required = true)]
    pub finish_reason: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse;
    use serde_json::json;

    fn completion(v: Value) -> Result<Completion, ApiError> {
        parse::<CompletionRequest>(v.to_string().as_bytes())?.validate(64)
    }

    #[test]
    fn prompt_is_a_string_or_one_string() {
        let ok = completion(json!({"model": "m", "prompt": ["从前"]})).unwrap();
        assert!(matches!(ok.gen.prompt, Prompt::Raw(ref p) if p == "从前"));
        assert_eq!(ok.gen.max_tokens, 16);
        let e = completion(json!({"model": "m", "prompt": ["a", "b"]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let e = completion(json!({"model": "m"})).unwrap_err();
        assert!(e.message.contains("`prompt` is required"), "{}", e.message);
        let e = completion(json!({"model": "m", "prompt": 7})).unwrap_err();
        assert_eq!(e.message, "`prompt` must be a string, got 7");
    }

    #[test]
    fn logprobs_is_a_count() {
        let ok = completion(json!({"model": "m", "prompt": "x", "logprobs": 2})).unwrap();
        assert!(ok.gen.logprobs && ok.gen.sampling.top_logprobs == 2);
        let e = completion(json!({"model": "m", "prompt": "x", "logprobs": 21})).unwrap_err();
        assert_eq!(e.message, "`logprobs` must be an integer in [0, 20], got 21");
        let e = completion(json!({"model": "m", "prompt": "x", "echo": true})).unwrap_err();
        assert_eq!(e.message, "`echo` is not supported by this server");
        let e = completion(json!({"model": "m", "prompt": "x", "temperature": -1})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }
}
