//! `POST /v1/chat/completions` and `POST /v1/completions`: parse and validate, hand the
//! request to the [pipeline](crate::pipeline), format its events as JSON or SSE.

use super::{choose_style, request_id, unix_time, JsonObject};
use crate::auth::Caller;
use crate::backend::Prompt;
use crate::backend::{Finished, TokenInfo};
use crate::caching;
use crate::error::ApiError;
use crate::pipeline::{self, AnswerEvent, AnswerStream, Ask, Route};
use crate::state::AppState;
use crate::validate::{self, Fields};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;

/// The two wire formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body(content = crate::openapi::ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: `data: <chat.completion.chunk JSON>` lines, then `data: [DONE]`", content(
            (crate::openapi::ChatCompletion = "application/json"),
            (crate::openapi::ServerSentEvent = "text/event-stream"),
        )),
        (status = 400, description = "A field has a bad value, the body is not a JSON object, the prompt does not fit the context, the guard refused a message (`code`: `pii_blocked`, `content_blocked`), or `style` names no configured style", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 404, description = "`model` is not the served model", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::openapi::ErrorBody),
        (status = 429, description = "The request queue is full; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "The model is not loaded yet; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 500, description = "Internal error (details in the server log)", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    let req = validate::chat_request(&body, backend.model_id(), backend.context_length())?;
    let style = choose_style(&state, &body, &headers)?;
    let ask = Ask {
        route: Route::Chat,
        gen: req.gen,
        prompt_field: None,
        style,
        cache: caching::directives(&headers, &body)?,
        request_id: request_id(&headers).to_string(),
        api_key_id: super::caller_key_id(&caller),
    };
    let answer = pipeline::answer(&state, ask).await?;
    Ok(respond(&state, Kind::Chat, req.stream, req.include_usage, answer).await)
}

#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "openai",
    request_body(content = crate::openapi::CompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: `data: <text_completion JSON>` lines, then `data: [DONE]`", content(
            (crate::openapi::TextCompletion = "application/json"),
            (crate::openapi::ServerSentEvent = "text/event-stream"),
        )),
        (status = 400, description = "A field has a bad value, the body is not a JSON object, the prompt does not fit the context, or the guard refused the prompt (`code`: `pii_blocked`, `content_blocked`)", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong API key (only when the server has API keys)", body = crate::openapi::ErrorBody),
        (status = 404, description = "`model` is not the served model", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::openapi::ErrorBody),
        (status = 429, description = "The request queue is full; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "The model is not loaded yet; see `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 500, description = "Internal error (details in the server log)", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    let f = Fields(&body);
    validate::check_model(&f, backend.model_id())?;
    f.refuse(&["suffix", "echo", "best_of"])?;
    let prompt = match f.0.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        _ => return Err(ApiError::invalid("prompt", "`prompt` is required and must be a string")),
    };
    let (stream, include_usage) = validate::stream_fields(&f)?;
    let top = match f.0.get("logprobs") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n <= 20) {
            Some(n) => Some(n as usize),
            None => return Err(ApiError::invalid("logprobs", "`logprobs` must be an integer in [0, 20]")),
        },
    };
    let mut sampling = validate::sampling(&f)?;
    sampling.top_logprobs = top.unwrap_or(0);
    let gen = crate::backend::GenRequest {
        prompt: Prompt::Raw(prompt),
        max_tokens: validate::max_tokens(&f, &["max_tokens"], backend.context_length(), 16)?,
        sampling,
        stop: f.stop()?,
        deadline: None,
        logprobs: top.is_some(),
    };
    let ask = Ask {
        route: Route::Text,
        gen,
        prompt_field: Some("prompt"),
        style: None,
        cache: caching::directives(&headers, &body)?,
        request_id: request_id(&headers).to_string(),
        api_key_id: super::caller_key_id(&caller),
    };
    let answer = pipeline::answer(&state, ask).await?;
    Ok(respond(&state, Kind::Text, stream, include_usage, answer).await)
}

/// The answer as JSON or SSE, with the cache headers.
async fn respond(state: &AppState, kind: Kind, stream: bool, include_usage: bool, answer: AnswerStream) -> Response {
    let wire = Wire {
        kind,
        id: match kind {
            Kind::Chat => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            Kind::Text => format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
        },
        model: state.backend.model_id().to_string(),
        created: unix_time(),
        include_usage,
    };
    let cache_status = answer.cache_status();
    let source = answer.cache_source().cloned();
    let mut response = if stream {
        stream_response(wire, answer)
    } else {
        match answer.collect().await {
            Ok(whole) => Json(wire.whole(&whole.text, &whole.logprobs, &whole.done)).into_response(),
            Err(e) => e.into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(cache_status.as_str()));
    if let Some((question, similarity)) = &source {
        // Which cached question answered this one (percent-encoded UTF-8: headers are ASCII).
        for (name, value) in
            [("x-cache-similarity", format!("{similarity:.4}")), ("x-cache-question", percent_encode(question))]
        {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
    response
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// OpenAI's chat and text completion shapes, whole and as chunks.
#[derive(Clone)]
struct Wire {
    kind: Kind,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

impl Wire {
    fn whole(&self, text: &str, infos: &[TokenInfo], done: &Finished) -> Value {
        let lp = logprobs_json(self.kind, infos);
        let (object, choice) = match self.kind {
            Kind::Chat => (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": lp,
                    "finish_reason": done.finish_reason.as_str(),
                }),
            ),
            Kind::Text => (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": done.finish_reason.as_str()}),
            ),
        };
        json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": [choice], "usage": usage_json(done),
        })
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Event {
        let object = if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
        let mut v =
            json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices});
        if self.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        Event::default().data(v.to_string())
    }

    /// The chat stream opens with the assistant role, as OpenAI's does.
    fn opening(&self) -> Option<Event> {
        (self.kind == Kind::Chat).then(|| {
            self.chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                None,
            )
        })
    }

    fn text(&self, text: &str, infos: &[TokenInfo]) -> Event {
        let lp = logprobs_json(self.kind, infos);
        self.chunk(
            match self.kind {
                Kind::Chat => json!([{"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}]),
                Kind::Text => json!([{"index": 0, "text": text, "logprobs": lp, "finish_reason": null}]),
            },
            None,
        )
    }

    fn last(&self, done: &Finished) -> Vec<Event> {
        let choices = match self.kind {
            Kind::Chat => {
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": done.finish_reason.as_str()}])
            }
            Kind::Text => {
                json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": done.finish_reason.as_str()}])
            }
        };
        let mut out = vec![self.chunk(choices, None)];
        if self.include_usage {
            out.push(self.chunk(json!([]), Some(usage_json(done))));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
}

/// Logprobs in the chat shape (`content: [{token, logprob, bytes, top_logprobs}]`) or the
/// text completion shape (parallel `tokens`, `token_logprobs`, `top_logprobs` lists); the
/// same for whole answers and chunks.
fn logprobs_json(kind: Kind, infos: &[TokenInfo]) -> Value {
    if infos.is_empty() {
        return Value::Null;
    }
    match kind {
        Kind::Chat => json!({"content": infos.iter().map(chat_logprob).collect::<Vec<_>>()}),
        Kind::Text => json!({
            "tokens": infos.iter().map(|i| i.token.clone()).collect::<Vec<_>>(),
            "token_logprobs": infos.iter().map(|i| i.logprob).collect::<Vec<_>>(),
            "top_logprobs": infos
                .iter()
                .map(|i| i.top.iter().map(|(t, l, _)| (t.clone(), json!(l))).collect::<serde_json::Map<_, _>>())
                .collect::<Vec<_>>(),
        }),
    }
}

fn chat_logprob(i: &TokenInfo) -> Value {
    json!({
        "token": i.token, "logprob": i.logprob, "bytes": i.bytes,
        "top_logprobs": i.top.iter().map(|(t, l, b)| json!({"token": t, "logprob": l, "bytes": b})).collect::<Vec<_>>(),
    })
}

fn usage_json(done: &Finished) -> Value {
    json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    })
}

/// Server-sent events: the opening chunk, a chunk per released text, the last chunk (and
/// usage), `[DONE]`. An error after the headers travels as an event in OpenAI's shape.
fn stream_response(wire: Wire, answer: AnswerStream) -> Response {
    let opening = futures_util::stream::iter(wire.opening());
    let events = futures_util::stream::unfold(Some((answer, wire)), |state| async move {
        let (mut answer, wire) = state?;
        match answer.next().await? {
            Ok(AnswerEvent::Text { text, infos }) => {
                let event = wire.text(&text, &infos);
                Some((vec![event], Some((answer, wire))))
            }
            Ok(AnswerEvent::Done(done)) => Some((wire.last(&done), None)),
            Err(e) => Some((vec![Event::default().data(e.body().to_string()), Event::default().data("[DONE]")], None)),
        }
    })
    .flat_map(futures_util::stream::iter);
    let stream = opening.chain(events).map(Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
