//! Steps 5-7 of the pipeline: the backend's (or the cache's) events through the output
//! filter, then the cache store and the record when the answer ends.

use crate::backend::{BackendError, EventStream, FinishReason, Finished, GenEvent, TokenInfo};
use crate::caching::{CachePlan, CacheStatus};
use crate::error::ApiError;
use crate::guarding::OutputFilter;
use crate::recording::{Capture, Outcome};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a transport sends: moderated text with the token infos it covers, then the end.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    Text {
        text: String,
        infos: Vec<TokenInfo>,
    },
    /// The last event. `finish_reason` is `content_filter` when the guard stopped the answer;
    /// usage then counts the tokens generated so far (and no prompt tokens if it stopped
    /// mid-stream, as the generation was cancelled).
    Done(Finished),
}

/// A whole answer: what [`AnswerStream::collect`] gathers.
#[derive(Debug, Clone)]
pub struct WholeAnswer {
    pub text: String,
    pub logprobs: Vec<TokenInfo>,
    pub done: Finished,
}

/// Where the events come from; the first one is received early to turn errors before
/// generation into errors of the call.
struct Source {
    first: Option<Result<GenEvent, BackendError>>,
    /// `None` once the answer is over; dropping it cancels the generation.
    events: Option<EventStream>,
}

/// What happens when the answer ends: cache store and record, each at most once.
struct Aftercare {
    plan: Option<CachePlan>,
    capture: Option<Capture>,
    cache: CacheStatus,
}

/// Time to first token, for generated (not replayed) answers.
struct Timing {
    /// `None` for a replayed answer: it has no time to first token.
    started: Option<Instant>,
    ttft: Option<Duration>,
    tokens: usize,
}

/// One answer in progress. Dropping it before the end cancels the generation (and records
/// nothing: the client went away).
pub struct AnswerStream {
    source: Source,
    filter: OutputFilter,
    after: Aftercare,
    timing: Timing,
    /// Events ready to hand out (the end can release text and the `Done` at once).
    ready: VecDeque<AnswerEvent>,
    cache_source: Option<(String, f32)>,
}

impl AnswerStream {
    pub(super) fn new(
        events: EventStream,
        filter: OutputFilter,
        plan: Option<CachePlan>,
        capture: Option<Capture>,
        cache: CacheStatus,
        cache_source: Option<(String, f32)>,
        started: Option<Instant>,
    ) -> AnswerStream {
        AnswerStream {
            source: Source { first: None, events: Some(events) },
            filter,
            after: Aftercare { plan, capture, cache },
            timing: Timing { started, ttft: None, tokens: 0 },
            ready: VecDeque::new(),
            cache_source,
        }
    }

    /// Waits for the backend's first event; an error there is returned (and the stream
    /// ends), anything else is kept for [`AnswerStream::next`].
    pub(super) async fn first_event(&mut self) -> Result<(), ApiError> {
        let first = match self.source.events.as_mut() {
            Some(events) => events.recv().await,
            None => None,
        };
        match first {
            Some(Err(e)) => {
                self.source.events = None;
                Err(ApiError::from(e))
            }
            other => {
                self.source.first = other;
                Ok(())
            }
        }
    }

    /// How the cache served this request (the `x-cache` header).
    pub fn cache_status(&self) -> CacheStatus {
        self.after.cache
    }

    /// For a semantic hit: the cached question that answered, and its similarity.
    pub fn cache_source(&self) -> Option<&(String, f32)> {
        self.cache_source.as_ref()
    }

    async fn next_backend_event(&mut self) -> Option<Result<GenEvent, BackendError>> {
        match self.source.first.take() {
            Some(event) => Some(event),
            None => self.source.events.as_mut()?.recv().await,
        }
    }

    /// The next moderated event; `None` after `Done` (or an error).
    pub async fn next(&mut self) -> Option<Result<AnswerEvent, ApiError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            self.source.events.as_ref()?;
            let event = match self.next_backend_event().await {
                Some(event) => event,
                None => {
                    self.source.events = None;
                    return Some(Err(ApiError::internal("the engine ended a request without finishing it")));
                }
            };
            match event {
                Ok(GenEvent::Token { text, info }) => self.on_token(&text, info),
                Ok(GenEvent::Done(done)) => self.on_done(done),
                Err(e) => {
                    self.source.events = None;
                    return Some(Err(ApiError::from(e)));
                }
            }
        }
    }

    fn on_token(&mut self, text: &str, info: Option<TokenInfo>) {
        if self.timing.tokens == 0 {
            if let Some(started) = self.timing.started {
                let ttft = started.elapsed();
                metrics::histogram!("luodi_time_to_first_token_seconds").record(ttft.as_secs_f64());
                self.timing.ttft = Some(ttft);
            }
        }
        self.timing.tokens += 1;
        match self.filter.push(text, info) {
            Ok(r) if r.text.is_empty() && r.infos.is_empty() => {}
            Ok(r) => self.ready.push_back(AnswerEvent::Text { text: r.text, infos: r.infos }),
            Err(_) => {
                // Stop here: cancel the generation; nothing of this answer is cached.
                self.source.events = None;
                self.after.plan = None;
                let done = Finished {
                    finish_reason: FinishReason::ContentFilter,
                    prompt_tokens: 0,
                    completion_tokens: self.timing.tokens,
                };
                self.end(done);
            }
        }
    }

    fn on_done(&mut self, done: Finished) {
        self.source.events = None;
        match self.filter.finish() {
            Ok(r) => {
                if !r.text.is_empty() || !r.infos.is_empty() {
                    self.ready.push_back(AnswerEvent::Text { text: r.text, infos: r.infos });
                }
                if let Some(plan) = self.after.plan.take() {
                    let text = self.filter.stored_text().to_string();
                    plan.store(
                        text,
                        done.finish_reason,
                        done.prompt_tokens,
                        done.completion_tokens,
                        self.filter.acted(),
                    );
                }
                self.end(done);
            }
            Err(_) => {
                self.after.plan = None;
                self.end(Finished { finish_reason: FinishReason::ContentFilter, ..done });
            }
        }
    }

    /// Records the interaction (once) and queues the last event.
    fn end(&mut self, done: Finished) {
        if let Some(capture) = self.after.capture.take() {
            capture.finish(Outcome {
                text: self.filter.stored_text().to_string(),
                finish_reason: done.finish_reason.as_str().to_string(),
                prompt_tokens: done.prompt_tokens,
                completion_tokens: done.completion_tokens,
                ttft: self.timing.ttft,
                cache: self.after.cache,
                guard: self.filter.actions(),
            });
        }
        self.ready.push_back(AnswerEvent::Done(done));
    }

    /// Drains the stream into one answer (what non-streamed responses send).
    pub async fn collect(mut self) -> Result<WholeAnswer, ApiError> {
        let (mut text, mut logprobs) = (String::new(), Vec::new());
        while let Some(event) = self.next().await {
            match event? {
                AnswerEvent::Text { text: t, infos } => {
                    text.push_str(&t);
                    logprobs.extend(infos);
                }
                AnswerEvent::Done(done) => return Ok(WholeAnswer { text, logprobs, done }),
            }
        }
        Err(ApiError::internal("the answer ended without finishing"))
    }
}
