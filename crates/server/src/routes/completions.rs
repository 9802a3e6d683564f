//! `POST /v1/chat/completions` and `POST /v1/completions`, streaming (SSE) or not.

use super::{collect_answer, request_id, unix_time, Answer, JsonObject, CONTENT_FILTER};
use crate::backend::{Finished, GenEvent, TokenInfo};
use crate::caching::{self, CachePlan, CacheRequest, CacheStatus};
use crate::error::ApiError;
use crate::guarding::{apply_style, OutputFilter, RequestGuard};
use crate::recording::{Capture, Meta, Outcome};
use crate::state::AppState;
use crate::validate::{self, Fields};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use luodi_engine::ChatMessage;
use luodi_engine::Prompt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Instant;

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
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    let mut req = validate::chat_request(&body, backend.model_id(), backend.context_length())?;
    // A style from the body, else from the header, else the API key's; checked before anything
    // is generated.
    let (style_name, param) = match (body.get("style"), headers.get("x-luodi-style")) {
        (Some(Value::String(name)), _) => (Some(name.clone()), "style"),
        (Some(Value::Null) | None, Some(h)) => {
            let name = h.to_str().map_err(|_| ApiError::invalid("x-luodi-style", "`x-luodi-style` must be text"))?;
            (Some(name.trim().to_string()), "x-luodi-style")
        }
        (Some(Value::Null) | None, None) => (
            state
                .guard
                .key_style(headers.get(axum::http::header::AUTHORIZATION).and_then(|h| h.to_str().ok()))
                .map(str::to_string),
            "key_styles",
        ),
        (Some(_), _) => return Err(ApiError::invalid("style", "`style` must be the name of a configured style")),
    };
    let style = match &style_name {
        Some(name) => Some(state.guard.style(name, param)?),
        None => None,
    };
    let mut guard = state.guard.request(request_id(&headers));
    if let Prompt::Chat(messages) = &mut req.gen.prompt {
        guard.check_messages(messages)?;
        if let Some(style) = style {
            apply_style(messages, style);
        }
    }
    let mut plan = None;
    if let Prompt::Chat(messages) = &req.gen.prompt {
        plan = caching::plan(
            &state,
            CacheRequest {
                headers: &headers,
                body: &body,
                route: "chat",
                messages,
                style,
                gen: &req.gen,
                input_touched: guard.touched(),
            },
        )?;
    }
    let meta = Meta::new(&headers, style_name);
    respond(state, Kind::Chat, req, guard, plan, meta).await
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
    let mut guard = state.guard.request(request_id(&headers));
    let prompt = guard.check_input("prompt", &prompt)?;
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
    let req = validate::ChatRequest {
        gen: crate::backend::GenRequest {
            prompt: Prompt::Raw(prompt),
            max_tokens: validate::max_tokens(&f, &["max_tokens"], backend.context_length(), 16)?,
            sampling,
            stop: f.stop()?,
            deadline: None,
            logprobs: top.is_some(),
        },
        stream,
        include_usage,
        top_logprobs: top.unwrap_or(0),
    };
    let as_message = match &req.gen.prompt {
        Prompt::Raw(p) => vec![ChatMessage::new("user", p.as_str())],
        _ => vec![],
    };
    let plan = caching::plan(
        &state,
        CacheRequest {
            headers: &headers,
            body: &body,
            route: "text",
            messages: &as_message,
            style: None,
            gen: &req.gen,
            input_touched: guard.touched(),
        },
    )?;
    let meta = Meta::new(&headers, None);
    respond(state, Kind::Text, req, guard, plan, meta).await
}

async fn respond(
    state: AppState,
    kind: Kind,
    mut req: validate::ChatRequest,
    guard: RequestGuard,
    mut plan: Option<CachePlan>,
    meta: Meta,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    req.gen.deadline = state.config.request_timeout.map(|t| started + t);
    let route = if kind == Kind::Chat { "chat" } else { "text" };
    let capture = Capture::new(&state, meta, route, &req.gen.prompt);
    // A cached answer is replayed through the same path as a generated one (events, output
    // filter, stream or JSON), so both look alike to the client, and a guard rule added since
    // the answer was stored still applies.
    let (events, cache_status, source) = match &mut plan {
        None => {
            caching::count_bypass();
            (state.backend.submit(req.gen)?, CacheStatus::Bypass, None)
        }
        Some(p) => match p.lookup().await {
            Some(hit) => {
                plan = None;
                (replay(&hit.answer), hit.status, hit.source)
            }
            None => (state.backend.submit(req.gen)?, CacheStatus::Miss, None),
        },
    };
    let generated = matches!(cache_status, CacheStatus::Miss | CacheStatus::Bypass);
    let mut response = answer(
        state,
        kind,
        req.stream,
        req.include_usage,
        events,
        guard,
        plan,
        generated.then_some(started),
        capture.map(|c| (c, cache_status)),
    )
    .await?;
    let headers = response.headers_mut();
    headers.insert("x-cache", axum::http::HeaderValue::from_static(cache_status.as_str()));
    if let Some((question, similarity)) = &source {
        // Which cached question answered this one (percent-encoded UTF-8: headers are ASCII).
        for (name, value) in
            [("x-cache-similarity", format!("{similarity:.4}")), ("x-cache-question", percent_encode(question))]
        {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
    Ok(response)
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

/// A cached answer as the engine's events: the text in small pieces, then the end.
fn replay(answer: &luodi_cache::CachedAnswer) -> crate::backend::EventStream {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let chars: Vec<char> = answer.text.chars().collect();
    for piece in chars.chunks(8) {
        let _ = tx.send(Ok(GenEvent::Token { text: piece.iter().collect(), info: None }));
    }
    let finish_reason = if answer.finish_reason == "length" { "length" } else { "stop" };
    let done =
        Finished { finish_reason, prompt_tokens: answer.prompt_tokens, completion_tokens: answer.completion_tokens };
    let _ = tx.send(Ok(GenEvent::Done(done)));
    rx
}

/// Turns events into the response, storing the answer in the cache when `plan` allows.
/// `started` is None for a replayed answer (no time-to-first-token metric).
async fn answer(
    state: AppState,
    kind: Kind,
    stream: bool,
    include_usage: bool,
    events: crate::backend::EventStream,
    guard: RequestGuard,
    plan: Option<CachePlan>,
    started: Option<Instant>,
    capture: Option<(Capture, CacheStatus)>,
) -> Result<Response, ApiError> {
    let id = match kind {
        Kind::Chat => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        Kind::Text => format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
    };
    let model = state.backend.model_id().to_string();
    let created = unix_time();
    let mut events = events;
    if stream {
        // An error before the first token (a bad parameter the engine found, a context
        // overflow) is still an HTTP error: the headers wait for the first event.
        let first = match events.recv().await {
            Some(Err(e)) => return Err(e),
            other => other,
        };
        let filter = guard.output();
        let stream = Stream {
            kind,
            first,
            events: Some(events),
            filter,
            started,
            tokens: 0,
            plan,
            text: String::new(),
            capture,
            ttft: None,
        };
        return Ok(stream_response(id, model, created, include_usage, stream));
    }
    let Answer { text, logprobs, done, moderated, stored_text, guard, ttft } =
        collect_answer(events, started, guard.output()).await?;
    if let Some(plan) = plan {
        plan.store(stored_text.clone(), done.finish_reason, done.prompt_tokens, done.completion_tokens, moderated);
    }
    if let Some((capture, cache)) = capture {
        capture.finish(Outcome {
            text: stored_text,
            finish_reason: done.finish_reason.to_string(),
            prompt_tokens: done.prompt_tokens,
            completion_tokens: done.completion_tokens,
            ttft,
            cache,
            guard,
        });
    }
    let lp = logprobs_json(kind, &logprobs);
    let choice = match kind {
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": lp,
            "finish_reason": done.finish_reason,
        }),
        Kind::Text => json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": done.finish_reason}),
    };
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(Json(json!({
        "id": id, "object": object, "created": created, "model": model,
        "choices": [choice], "usage": usage_json(&done),
    }))
    .into_response())
}

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

/// A streamed answer in progress: the engine's events through the guard's filter.
struct Stream {
    kind: Kind,
    /// The event already received (to turn an early error into an HTTP error).
    first: Option<Result<GenEvent, ApiError>>,
    /// `None` once the answer is over; dropping it cancels the generation.
    events: Option<crate::backend::EventStream>,
    filter: OutputFilter,
    /// None for a replayed answer.
    started: Option<Instant>,
    tokens: usize,
    /// Where the answer goes once it is complete, and the text sent so far.
    plan: Option<CachePlan>,
    text: String,
    /// The record of this request, written when the answer ends.
    capture: Option<(Capture, CacheStatus)>,
    ttft: Option<std::time::Duration>,
}

impl Stream {
    /// Records the interaction (once) with the answer so far.
    fn record(&mut self, finish_reason: &str, prompt_tokens: usize) {
        if let Some((capture, cache)) = self.capture.take() {
            capture.finish(Outcome {
                text: self.filter.stored_text().to_string(),
                finish_reason: finish_reason.to_string(),
                prompt_tokens,
                completion_tokens: self.tokens,
                ttft: self.ttft,
                cache,
                guard: self.filter.actions(),
            });
        }
    }
}

impl Stream {
    async fn next(&mut self) -> Option<Result<GenEvent, ApiError>> {
        match self.first.take() {
            Some(event) => Some(event),
            None => self.events.as_mut()?.recv().await,
        }
    }
}

fn stream_response(id: String, model: String, created: u64, include_usage: bool, stream: Stream) -> Response {
    let kind = stream.kind;
    let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut v = json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
        if include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        Event::default().data(v.to_string())
    };
    let text_choice = move |text: &str, infos: &[TokenInfo]| -> Value {
        let lp = match (infos.is_empty(), kind) {
            (true, _) => Value::Null,
            (false, Kind::Chat) => json!({"content": infos.iter().map(chat_logprob).collect::<Vec<_>>()}),
            (false, Kind::Text) => json!({
                "tokens": infos.iter().map(|i| i.token.clone()).collect::<Vec<_>>(),
                "token_logprobs": infos.iter().map(|i| i.logprob).collect::<Vec<_>>(),
            }),
        };
        match kind {
            Kind::Chat => json!([{"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}]),
            Kind::Text => json!([{"index": 0, "text": text, "logprobs": lp, "finish_reason": null}]),
        }
    };
    let final_choice = move |finish_reason: &str| match kind {
        Kind::Chat => json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason}]),
        Kind::Text => json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason}]),
    };
    let events = futures_util::stream::unfold(stream, move |mut s| {
        let chunk = chunk.clone();
        async move {
            let event = s.next().await?;
            let mut out = Vec::new();
            match event {
                Ok(GenEvent::Token { text, info }) => {
                    if s.tokens == 0 {
                        if let Some(started) = s.started {
                            metrics::histogram!("luodi_time_to_first_token_seconds")
                                .record(started.elapsed().as_secs_f64());
                            s.ttft = Some(started.elapsed());
                        }
                        if kind == Kind::Chat {
                            out.push(chunk(
                                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                                None,
                            ));
                        }
                    }
                    s.tokens += 1;
                    match s.filter.push(&text, info) {
                        Ok(r) if r.text.is_empty() && r.infos.is_empty() => {}
                        Ok(r) => {
                            if s.plan.is_some() {
                                s.text.push_str(&r.text);
                            }
                            out.push(chunk(text_choice(&r.text, &r.infos), None))
                        }
                        Err(_) => {
                            // Stop: cancel the generation, tell the client why, end the stream.
                            s.events = None;
                            s.plan = None;
                            s.record(CONTENT_FILTER, 0);
                            out.push(chunk(final_choice(CONTENT_FILTER), None));
                            if include_usage {
                                let usage = Finished {
                                    finish_reason: CONTENT_FILTER,
                                    prompt_tokens: 0,
                                    completion_tokens: s.tokens,
                                };
                                out.push(chunk(json!([]), Some(usage_json(&usage))));
                            }
                            out.push(Event::default().data("[DONE]"));
                        }
                    }
                }
                Ok(GenEvent::Done(done)) => {
                    s.events = None;
                    let reason = match s.filter.finish() {
                        Ok(r) => {
                            if !r.text.is_empty() || !r.infos.is_empty() {
                                out.push(chunk(text_choice(&r.text, &r.infos), None));
                            }
                            if let Some(plan) = s.plan.take() {
                                s.text.push_str(&r.text);
                                let text = std::mem::take(&mut s.text);
                                let moderated = s.filter.acted();
                                plan.store(
                                    text,
                                    done.finish_reason,
                                    done.prompt_tokens,
                                    done.completion_tokens,
                                    moderated,
                                );
                            }
                            done.finish_reason
                        }
                        Err(_) => CONTENT_FILTER,
                    };
                    s.record(reason, done.prompt_tokens);
                    out.push(chunk(final_choice(reason), None));
                    if include_usage {
                        out.push(chunk(json!([]), Some(usage_json(&done))));
                    }
                    out.push(Event::default().data("[DONE]"));
                }
                // Headers are gone by now: the error travels as an SSE event in OpenAI's shape.
                Err(e) => {
                    s.events = None;
                    out.push(Event::default().data(e.body().to_string()));
                    out.push(Event::default().data("[DONE]"));
                }
            }
            Some((out, s))
        }
    });
    let stream = events.flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
