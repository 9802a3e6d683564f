//! Parse, don't validate: JSON request bodies become `GenRequest`s, and every rejection names
//! the field and what is allowed (`` `top_p` must be in (0, 1] ``).

use crate::backend::GenRequest;
use crate::backend::{ChatMessage, Prompt, Sampling};
use crate::error::ApiError;
use serde_json::{Map, Value};

/// A JSON object body, or a 400 that says why not.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_json("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_json(format!("the request body is not valid JSON: {e}"))),
    }
}

pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(name, format!("`{name}` must be a string"))),
        }
    }

    pub fn required_string(&self, name: &str) -> Result<String, ApiError> {
        self.string(name)?.ok_or_else(|| ApiError::invalid(name, format!("`{name}` is required")))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(name, format!("`{name}` must be true or false"))),
        }
    }

    /// A number in `[lo, hi]` (or `(lo, hi]` when `lo_open`).
    pub fn number(&self, name: &str, lo: f64, hi: f64, lo_open: bool) -> Result<Option<f32>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let range = if lo_open { format!("({lo}, {hi}]") } else { format!("[{lo}, {hi}]") };
        let x = v.as_f64().ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be a number in {range}")))?;
        let ok = if lo_open { x > lo && x <= hi } else { x >= lo && x <= hi };
        if !ok {
            return Err(ApiError::invalid(name, format!("`{name}` must be in {range}, got {x}")));
        }
        Ok(Some(x as f32))
    }

    pub fn integer(&self, name: &str, lo: u64, hi: u64) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let x = v.as_u64().filter(|x| (lo..=hi).contains(x));
        x.map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be an integer in [{lo}, {hi}], got {v}")))
    }

    pub fn seed(&self) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get("seed") else { return Ok(None) };
        // OpenAI accepts any 64-bit integer; negative seeds are folded into u64.
        v.as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .map(Some)
            .ok_or_else(|| ApiError::invalid("seed", format!("`seed` must be an integer, got {v}")))
    }

    /// `stop`: a string or a list of up to 4 strings.
    pub fn stop(&self) -> Result<Vec<String>, ApiError> {
        match self.get("stop") {
            None => Ok(vec![]),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) if items.len() <= 4 => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::invalid("stop", "`stop` must be a string or a list of strings")),
            Some(Value::Array(_)) => Err(ApiError::invalid("stop", "`stop` may hold at most 4 strings")),
            Some(_) => Err(ApiError::invalid("stop", "`stop` must be a string or a list of strings")),
        }
    }

    /// Fields this server recognizes but does not implement are refused, not ignored.
    pub fn refuse(&self, names: &[&str]) -> Result<(), ApiError> {
        for name in names {
            if self.get(name).is_some() {
                return Err(ApiError::invalid(name, format!("`{name}` is not supported by this server")));
            }
        }
        Ok(())
    }
}

/// Sampling fields shared by the chat, completion and generate endpoints. OpenAI's
/// defaults (temperature 1, top_p 1, no top-k or min-p) unless the luodi extensions
/// `top_k`, `min_p`, `repetition_penalty` are given.
pub fn sampling(f: &Fields) -> Result<Sampling, ApiError> {
    let n = f.integer("n", 1, u64::MAX)?;
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "`n` must be 1: this server returns one choice per request"));
    }
    Ok(Sampling {
        temperature: f.number("temperature", 0.0, 2.0, false)?.unwrap_or(1.0),
        top_p: f.number("top_p", 0.0, 1.0, true)?.unwrap_or(1.0),
        top_k: f.integer("top_k", 0, 1_000_000)?.map_or(0, |k| k as usize),
        min_p: f.number("min_p", 0.0, 1.0, false)?.unwrap_or(0.0),
        repetition_penalty: f.number("repetition_penalty", 0.0, 10.0, true)?.unwrap_or(1.0),
        frequency_penalty: f.number("frequency_penalty", -2.0, 2.0, false)?.unwrap_or(0.0),
        presence_penalty: f.number("presence_penalty", -2.0, 2.0, false)?.unwrap_or(0.0),
        seed: f.seed()?,
        top_logprobs: 0,
    })
}

/// `max_tokens` / `max_completion_tokens` (chat) or `max_length` (/generate), bounded by
/// what the context leaves.
pub fn max_tokens(f: &Fields, names: &[&str], context: usize, default: usize) -> Result<usize, ApiError> {
    for name in names {
        if let Some(n) = f.integer(name, 1, context as u64)? {
            return Ok(n as usize);
        }
    }
    Ok(default.min(context))
}

/// Chat `messages`: roles system/user/assistant/developer; content a string or a list of
/// text parts.
pub fn messages(f: &Fields) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = f.0.get("messages") else {
        return Err(ApiError::invalid("messages", "`messages` is required and must be a list of messages"));
    };
    if items.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let obj = m.as_object().ok_or_else(|| ApiError::invalid(&param, format!("`{param}` must be an object")))?;
            let role = match obj.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "user" | "assistant")) => r.to_string(),
                Some("developer") => "system".to_string(),
                Some(other) => {
                    return Err(ApiError::invalid(
                        &format!("{param}.role"),
                        format!("`{param}.role` must be system, developer, user or assistant, got `{other}`"),
                    ))
                }
                None => return Err(ApiError::invalid(&format!("{param}.role"), format!("`{param}.role` is required"))),
            };
            let content = match obj.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => Ok(t),
                        _ => Err(ApiError::invalid(
                            &format!("{param}.content"),
                            format!("`{param}.content` parts must be {{\"type\": \"text\", \"text\": ...}}"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat(),
                Some(Value::Null) | None if role == "assistant" => String::new(),
                _ => {
                    return Err(ApiError::invalid(
                        &format!("{param}.content"),
                        format!("`{param}.content` must be a string or a list of text parts"),
                    ))
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// The chat endpoint's request.
pub struct ChatRequest {
    pub gen: GenRequest,
    pub stream: bool,
    pub include_usage: bool,
    pub top_logprobs: usize,
}

pub fn chat_request(body: &Map<String, Value>, model: &str, context: usize) -> Result<ChatRequest, ApiError> {
    let f = Fields(body);
    check_model(&f, model)?;
    f.refuse(&["tools", "functions", "tool_choice", "function_call", "audio", "modalities", "prediction"])?;
    if let Some(Value::Object(rf)) = f.get("response_format") {
        if rf.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid("response_format", "only `{\"type\": \"text\"}` is supported"));
        }
    }
    let _ = f.string("user")?;
    let messages = messages(&f)?;
    let (stream, include_usage) = stream_fields(&f)?;
    let logprobs = f.bool("logprobs")?.unwrap_or(false);
    let top_logprobs = f.integer("top_logprobs", 0, 20)?.unwrap_or(0) as usize;
    if top_logprobs > 0 && !logprobs {
        return Err(ApiError::invalid("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
    }
    let mut sampling = sampling(&f)?;
    sampling.top_logprobs = top_logprobs;
    Ok(ChatRequest {
        gen: GenRequest {
            prompt: Prompt::Chat(messages),
            max_tokens: max_tokens(&f, &["max_completion_tokens", "max_tokens"], context, 512)?,
            sampling,
            stop: f.stop()?,
            deadline: None,
            logprobs,
        },
        stream,
        include_usage,
        top_logprobs,
    })
}

pub fn stream_fields(f: &Fields) -> Result<(bool, bool), ApiError> {
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("stream_options.include_usage", "must be true or false")),
        },
        Some(_) => return Err(ApiError::invalid("stream_options", "`stream_options` must be an object")),
    };
    if include_usage && !stream {
        return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed with `stream: true`"));
    }
    Ok((stream, include_usage))
}

pub fn check_model(f: &Fields, served: &str) -> Result<(), ApiError> {
    let model = f.required_string("model")?;
    if model != served {
        return Err(ApiError::model_not_found(&model, served));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<ChatRequest, ApiError> {
        chat_request(v.as_object().unwrap(), "m", 100)
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
            ("top_p", json!(0), "`top_p` must be in (0, 1]"),
            ("temperature", json!(3), "`temperature` must be in [0, 2]"),
            ("temperature", json!("hot"), "`temperature` must be a number"),
            ("max_tokens", json!(0), "`max_tokens` must be an integer in [1, 100]"),
            ("max_tokens", json!(101), "`max_tokens` must be an integer in [1, 100]"),
            ("n", json!(2), "`n` must be 1"),
            ("stop", json!(["a", "b", "c", "d", "e"]), "at most 4"),
            ("stop", json!(5), "`stop` must be a string"),
            ("presence_penalty", json!(-3), "`presence_penalty` must be in [-2, 2]"),
            ("top_logprobs", json!(3), "needs `logprobs: true`"),
            ("tools", json!([]), "`tools` is not supported"),
            ("stream_options", json!({"include_usage": true}), "only allowed with `stream: true`"),
        ] {
            let err = chat(with(field, value)).err().unwrap_or_else(|| panic!("{field} should be rejected"));
            assert_eq!(err.status, 400);
            assert!(err.message.contains(needle), "{field}: {}", err.message);
            assert!(err.param.as_deref().unwrap_or("").starts_with(field), "{field}: param {:?}", err.param);
        }
    }

    #[test]
    fn messages_are_checked() {
        let err = chat(json!({"model": "m", "messages": []})).err().unwrap();
        assert!(err.message.contains("must not be empty"));
        let err = chat(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let ok =
            chat(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "你好"}]}]}))
                .unwrap();
        assert!(matches!(ok.gen.prompt, Prompt::Chat(ref m) if m[0].content == "你好"));
    }

    #[test]
    fn unknown_model_is_404() {
        let err = chat(json!({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})).err().unwrap();
        assert_eq!(err.status, 404);
        assert!(err.message.contains("`gpt-4`"));
    }

    #[test]
    fn bad_json_is_400() {
        assert_eq!(parse_object(b"{not json").err().unwrap().status, 400);
        assert_eq!(parse_object(b"[1]").err().unwrap().status, 400);
    }

    #[test]
    fn max_completion_tokens_wins() {
        let mut v = with("max_tokens", json!(10));
        v["max_completion_tokens"] = json!(20);
        assert_eq!(chat(v).unwrap().gen.max_tokens, 20);
    }
}
