//! `POST /v1/chat/completions` and `POST /v1/completions`: parse and validate, hand the
//! request to the [pipeline](crate::pipeline), format its events as JSON or SSE.

use super::{choose_style, request_id, unix_time, Body};
use crate::auth::Caller;
use crate::backend::{Finished, TokenInfo};
use crate::caching;
use crate::error::ApiError;
use crate::pipeline::{self, AnswerEvent, AnswerStream, Ask, Route};
use crate::state::AppState;
use crate::wire::chat::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatCompletionRequest, ChunkChoice, Delta,
};
use crate::wire::completion::{CompletionRequest, TextChoice, TextCompletion};
use crate::wire::errors::GenerationErrors;
use crate::wire::logprobs::{ChatLogprobs, TextLogprobs};
use crate::wire::system::{Absent, Usage};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
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
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: `data: <chat.completion.chunk JSON>` lines, then `data: [DONE]`", content(
            (ChatCompletion = "application/json"),
            (ChatChunk = "text/event-stream"),
        )),
        GenerationErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    Body(body): Body<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    check_model(&body.model, backend.model_id())?;
    let req = body.validate(backend.context_length())?;
    let style = choose_style(&state, body.style.as_deref(), &headers)?;
    let ask = Ask {
        route: Route::Chat,
        gen: req.gen,
        prompt_field: None,
        style,
        cache: caching::directives(&headers, body.cache),
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
    request_body(content = CompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: `data: <text_completion JSON>` lines, then `data: [DONE]`", content(
            (TextCompletion = "application/json"),
            (TextCompletion = "text/event-stream"),
        )),
        GenerationErrors,
    ),
    security(("bearer" = []), ())
)]
pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    Body(body): Body<CompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    check_model(&body.model, backend.model_id())?;
    let req = body.validate(backend.context_length())?;
    let ask = Ask {
        route: Route::Text,
        gen: req.gen,
        prompt_field: Some("prompt"),
        style: None,
        cache: caching::directives(&headers, body.cache),
        request_id: request_id(&headers).to_string(),
        api_key_id: super::caller_key_id(&caller),
    };
    let answer = pipeline::answer(&state, ask).await?;
    Ok(respond(&state, Kind::Text, req.stream, req.include_usage, answer).await)
}

/// A request for another model is a 404 naming the one served.
fn check_model(asked: &str, served: &str) -> Result<(), ApiError> {
    if asked != served {
        return Err(ApiError::model_not_found(asked, served));
    }
    Ok(())
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
            Ok(whole) => wire.whole(&whole.text, &whole.logprobs, &whole.done),
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
    fn whole(&self, text: &str, infos: &[TokenInfo], done: &Finished) -> Response {
        let finish_reason = done.finish_reason.as_str();
        let usage = Usage::new(done.prompt_tokens, done.completion_tokens);
        let (id, model, created) = (self.id.as_str(), self.model.as_str(), self.created);
        match self.kind {
            Kind::Chat => Json(ChatCompletion {
                id,
                object: "chat.completion",
                created,
                model,
                choices: [ChatChoice {
                    index: 0,
                    message: AssistantMessage { role: "assistant", content: text },
                    logprobs: ChatLogprobs::of(infos),
                    finish_reason,
                }],
                usage,
            })
            .into_response(),
            Kind::Text => Json(TextCompletion {
                id,
                object: "text_completion",
                created,
                model,
                choices: vec![TextChoice {
                    index: 0,
                    text,
                    logprobs: TextLogprobs::of(infos),
                    finish_reason: Some(finish_reason),
                }],
                usage: Absent::Value(usage),
            })
            .into_response(),
        }
    }

    /// `usage` on a chunk: left out unless asked for, then null but on the last.
    fn usage(&self, usage: Option<Usage>) -> Absent<Usage> {
        match (self.include_usage, usage) {
            (false, _) => Absent::Omitted,
            (true, None) => Absent::Null,
            (true, Some(u)) => Absent::Value(u),
        }
    }

    /// One chunk: the text (`None` for the last, with `finish`), or no choice (usage).
    fn chunk(&self, choice: Option<(&str, &[TokenInfo])>, finish: Option<&'static str>, usage: Option<Usage>) -> Event {
        let (id, model, created, usage) = (self.id.as_str(), self.model.as_str(), self.created, self.usage(usage));
        let with_choice = choice.is_some() || finish.is_some();
        let (text, infos) = choice.unwrap_or(("", &[]));
        let data = match self.kind {
            Kind::Chat => to_data(&ChatChunk {
                id,
                object: "chat.completion.chunk",
                created,
                model,
                choices: with_choice
                    .then(|| ChunkChoice {
                        index: 0,
                        delta: Delta { role: None, content: finish.is_none().then_some(text) },
                        logprobs: ChatLogprobs::of(infos),
                        finish_reason: finish,
                    })
                    .into_iter()
                    .collect(),
                usage,
            }),
            Kind::Text => to_data(&TextCompletion {
                id,
                object: "text_completion",
                created,
                model,
                choices: with_choice
                    .then(|| TextChoice { index: 0, text, logprobs: TextLogprobs::of(infos), finish_reason: finish })
                    .into_iter()
                    .collect(),
                usage,
            }),
        };
        Event::default().data(data)
    }

    /// The chat stream opens with the assistant role, as OpenAI's does.
    fn opening(&self) -> Option<Event> {
        (self.kind == Kind::Chat).then(|| {
            let chunk = ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: vec![ChunkChoice {
                    index: 0,
                    delta: Delta { role: Some("assistant"), content: Some("") },
                    logprobs: None,
                    finish_reason: None,
                }],
                usage: self.usage(None),
            };
            Event::default().data(to_data(&chunk))
        })
    }

    fn text(&self, text: &str, infos: &[TokenInfo]) -> Event {
        self.chunk(Some((text, infos)), None, None)
    }

    fn last(&self, done: &Finished) -> Vec<Event> {
        let mut out = vec![self.chunk(None, Some(done.finish_reason.as_str()), None)];
        if self.include_usage {
            out.push(self.chunk(None, None, Some(Usage::new(done.prompt_tokens, done.completion_tokens))));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
}

/// A chunk's JSON. The wire types hold only strings and numbers, so this cannot fail.
fn to_data(chunk: &impl Serialize) -> String {
    serde_json::to_string(chunk).unwrap_or_default()
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
