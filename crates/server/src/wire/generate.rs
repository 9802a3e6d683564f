//! `POST /generate`: `{"prompt": "...", "max_length": 100}` -> `{"response": "..."}`.

use super::rules::{Bound, Rules};
use super::sampling::{self, SamplingFields};
use super::{pinpoint_part, PathError, Request};
use crate::backend::{ChatMessage, GenRequest, Prompt};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

const RULES: Rules = Rules {
    bounds: &[Bound::tokens("max_length"), Bound::tokens("max_tokens")],
    expected: &[("prompt", "a string"), ("raw", "true or false")],
    refused: &[],
};

/// `POST /generate`. OpenAI's sampling fields are accepted too.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateRequest {
    /// The user's message; the chat template is applied unless `raw` (or the model has none).
    pub prompt: String,
    /// Tokens to generate, at most the model's context length; default 100.
    pub max_length: Option<u64>,
    /// Alias of `max_length` (used when `max_length` is absent).
    pub max_tokens: Option<u64>,
    /// Send the prompt as is, without the chat template.
    pub raw: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

impl Request for GenerateRequest {
    const RULES: &'static [&'static Rules] = &[&RULES, &sampling::RULES];

    fn pinpoint(body: &Value) -> Option<PathError> {
        pinpoint_part::<SamplingFields>(body)
    }
}

impl GenerateRequest {
    /// `chat_template`: whether the model has one (else the prompt is always raw).
    pub fn validate(&self, context: usize, chat_template: bool) -> Result<GenRequest, ApiError> {
        let prompt = if self.raw.unwrap_or(false) || !chat_template {
            Prompt::Raw(self.prompt.clone())
        } else {
            Prompt::Chat(vec![ChatMessage::new("user", self.prompt.clone())])
        };
        let bound = |f| RULES.bound(f).expect("the generate rules bound this field");
        let max_tokens = match bound("max_length").check_int(self.max_length, Some(context))? {
            Some(n) => Some(n),
            None => bound("max_tokens").check_int(self.max_tokens, Some(context))?,
        };
        Ok(GenRequest {
            prompt,
            max_tokens: max_tokens.map_or(100.min(context), |n| n as usize),
            sampling: self.sampling.sampling(0)?,
            stop: self.sampling.stop()?,
            deadline: None,
            logprobs: false,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct GenerateResponse<'a> {
    pub response: &'a str,
    /// `stop`, `length`, or `content_filter` when the guard stopped the answer.
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse;

    #[test]
    fn max_length_wins_and_is_bounded() {
        let r = parse::<GenerateRequest>(r#"{"prompt": "你好", "max_length": 7, "max_tokens": 9}"#.as_bytes()).unwrap();
        let gen = r.validate(50, true).unwrap();
        assert_eq!(gen.max_tokens, 7);
        assert!(matches!(gen.prompt, Prompt::Chat(_)));
        let r = parse::<GenerateRequest>(br#"{"prompt": "x", "max_length": 51}"#).unwrap();
        assert_eq!(r.validate(50, true).unwrap_err().message, "`max_length` must be an integer in [1, 50], got 51");
        let r = parse::<GenerateRequest>(br#"{"prompt": "x", "raw": true}"#).unwrap();
        assert!(matches!(r.validate(50, true).unwrap().prompt, Prompt::Raw(_)));
        assert_eq!(parse::<GenerateRequest>(b"{}").unwrap_err().message, "`prompt` is required: a string");
    }
}
