//! One streamed chat completion, timed with a monotonic clock from just before it is sent.

use super::sse::{clip, interpret, SseParser};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Where and how requests go; shared by every request of a run.
pub struct Target {
    pub client: reqwest::Client,
    pub chat_url: reqwest::Url,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// What every request body has besides its messages.
pub struct RequestTemplate {
    pub model: String,
    pub system: Option<String>,
    pub max_tokens: u32,
    pub temperature: f64,
    pub extra_body: Map<String, Value>,
}

impl RequestTemplate {
    pub fn body(&self, prompt: &[Value]) -> Value {
        let mut messages = Vec::with_capacity(prompt.len() + 1);
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(prompt.iter().cloned());
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        });
        if let Value::Object(map) = &mut body {
            for (k, v) in &self.extra_body {
                map.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

/// Timings and token counts of one successful request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Send -> first chunk with generated text; None when the reply had no text at all.
    pub ttft: Option<Duration>,
    /// Send -> `data: [DONE]`.
    pub e2e: Duration,
    /// Gaps between successive chunks with text.
    pub itl: Vec<Duration>,
    pub completion_tokens: u64,
    pub prompt_tokens: Option<u64>,
    /// The server sent no usage, so completion_tokens counts text chunks instead.
    pub estimated: bool,
}

#[derive(Debug, Clone)]
pub enum Failure {
    Status(u16, String),
    Timeout,
    Connect(String),
    Stream(String),
}

impl Failure {
    /// The key errors are counted under: the HTTP status, or "timeout", "connect", "stream".
    pub fn kind(&self) -> String {
        match self {
            Failure::Status(code, _) => code.to_string(),
            Failure::Timeout => "timeout".into(),
            Failure::Connect(_) => "connect".into(),
            Failure::Stream(_) => "stream".into(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Status(code, body) => format!("HTTP {code}: {body}"),
            Failure::Timeout => "no complete reply within --timeout".into(),
            Failure::Connect(m) | Failure::Stream(m) => m.clone(),
        }
    }
}

pub type Outcome = Result<Sample, Failure>;

pub async fn send(target: &Target, body: &Value) -> Outcome {
    let start = Instant::now();
    tokio::time::timeout(target.timeout, exchange(target, body, start)).await.unwrap_or(Err(Failure::Timeout))
}

async fn exchange(target: &Target, body: &Value, start: Instant) -> Outcome {
    let mut request = target.client.post(target.chat_url.clone()).json(body);
    if let Some(key) = &target.api_key {
        request = request.bearer_auth(key);
    }
    let mut response = request.send().await.map_err(|e| Failure::Connect(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(Failure::Status(status.as_u16(), error_message(&text)));
    }
    let mut parser = SseParser::default();
    let mut timing = Timing::new(start);
    while !timing.done {
        let bytes = response.chunk().await.map_err(|e| Failure::Stream(format!("reading: {}", error_chain(&e))))?;
        let now = Instant::now();
        let Some(bytes) = bytes else {
            if let Some(data) = parser.finish().map_err(Failure::Stream)? {
                timing.event(&data, now)?;
            }
            break;
        };
        for data in parser.feed(&bytes).map_err(Failure::Stream)? {
            timing.event(&data, now)?;
        }
    }
    if !timing.done {
        return Err(Failure::Stream("the stream ended before `data: [DONE]`".into()));
    }
    // Read the end of the body so the connection goes back to the pool instead of being closed.
    while let Ok(Some(_)) = response.chunk().await {}
    Ok(timing.sample())
}

/// Accumulates what the events of one stream say, stamped with when their bytes arrived.
struct Timing {
    start: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    itl: Vec<Duration>,
    text_chunks: u64,
    usage_completion: Option<u64>,
    usage_prompt: Option<u64>,
    end: Option<Instant>,
    done: bool,
}

impl Timing {
    fn new(start: Instant) -> Self {
        Timing {
            start,
            first: None,
            last: None,
            itl: Vec::new(),
            text_chunks: 0,
            usage_completion: None,
            usage_prompt: None,
            end: None,
            done: false,
        }
    }

    fn event(&mut self, data: &str, at: Instant) -> Result<(), Failure> {
        let chunk = interpret(data).map_err(Failure::Stream)?;
        if chunk.content.is_some() {
            self.text_chunks += 1;
            if let Some(last) = self.last {
                self.itl.push(at - last);
            }
            self.first.get_or_insert(at);
            self.last = Some(at);
        }
        if let Some(usage) = chunk.usage {
            self.usage_completion = usage.completion_tokens.or(self.usage_completion);
            self.usage_prompt = usage.prompt_tokens.or(self.usage_prompt);
        }
        if chunk.done {
            self.done = true;
            self.end = Some(at);
        }
        Ok(())
    }

    fn sample(self) -> Sample {
        let end = self.end.unwrap_or_else(Instant::now);
        Sample {
            ttft: self.first.map(|f| f - self.start),
            e2e: end - self.start,
            itl: self.itl,
            completion_tokens: self.usage_completion.unwrap_or(self.text_chunks),
            prompt_tokens: self.usage_prompt,
            estimated: self.usage_completion.is_none(),
        }
    }
}

/// The message of an OpenAI-shaped error body (`{"error": {"message": ...}}`), else the body.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    match parsed.as_ref().and_then(|v| v["error"]["message"].as_str()) {
        Some(message) => clip(message),
        None => clip(body.trim()),
    }
}

/// reqwest's own message hides the cause ("error sending request"); the chain names it
/// ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_stream_usage_and_extra_keys() {
        let t = RequestTemplate {
            model: "m".into(),
            system: Some("Be brief.".into()),
            max_tokens: 16,
            temperature: 0.0,
            extra_body: serde_json::from_str(r#"{"cache_prompt": false, "max_tokens": 8}"#).unwrap(),
        };
        let b = t.body(&[json!({"role": "user", "content": "hi"})]);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], "hi");
        assert_eq!(b["cache_prompt"], false);
        // --extra-body wins over luodi's own fields.
        assert_eq!(b["max_tokens"], 8);
    }

    #[test]
    fn timing_counts_text_chunks_without_usage() {
        let start = Instant::now();
        let mut t = Timing::new(start);
        let at = |ms| start + Duration::from_millis(ms);
        t.event(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#, at(5)).unwrap();
        t.event(r#"{"choices":[{"delta":{"content":"a"}}]}"#, at(10)).unwrap();
        t.event(r#"{"choices":[{"delta":{"content":"b"}}]}"#, at(13)).unwrap();
        t.event(r#"{"choices":[{"delta":{"content":"c"}}]}"#, at(20)).unwrap();
        t.event("[DONE]", at(21)).unwrap();
        let s = t.sample();
        assert_eq!(s.ttft, Some(Duration::from_millis(10)));
        assert_eq!(s.e2e, Duration::from_millis(21));
        assert_eq!(s.itl, vec![Duration::from_millis(3), Duration::from_millis(7)]);
        assert_eq!((s.completion_tokens, s.estimated), (3, true));
    }

    #[test]
    fn error_message_of_openai_and_plain_bodies() {
        assert_eq!(error_message(r#"{"error": {"message": "queue full", "type": "x"}}"#), "queue full");
        assert_eq!(error_message(" Service Unavailable\n"), "Service Unavailable");
        assert_eq!(error_message(r#"{"detail": "no"}"#), r#"{"detail": "no"}"#);
    }

    #[test]
    fn timing_prefers_usage() {
        let start = Instant::now();
        let mut t = Timing::new(start);
        t.event(r#"{"choices":[{"delta":{"content":"ab"}}]}"#, start).unwrap();
        t.event(r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#, start).unwrap();
        let s = t.sample();
        assert_eq!((s.completion_tokens, s.prompt_tokens, s.estimated), (2, Some(9), false));
    }
}
