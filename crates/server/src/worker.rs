//! The engine behind the backend seam: one OS thread owns the model and serves queued
//! requests in arrival order (FIFO; continuous batching comes with the scheduler).
//!
//! A request's events go back on its own channel. When the client goes away its receiver
//! is dropped, the next send fails, and generation stops there.

use crate::backend::{Backend, EventStream, Finished, GenEvent, GenRequest, TokenInfo};
use crate::error::ApiError;
use luodi_engine::{Engine, FinishReason, GenerateRequest};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

struct Job {
    request: GenRequest,
    reply: mpsc::UnboundedSender<Result<GenEvent, ApiError>>,
}

pub struct EngineBackend {
    model_id: String,
    context_length: usize,
    queue: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

impl EngineBackend {
    /// Starts the engine thread. `max_waiting` bounds the queue: past it, requests get 429.
    pub fn start(engine: Engine, model_id: String, max_waiting: usize) -> Self {
        let (queue, jobs) = sync_channel::<Job>(max_waiting.max(1));
        let waiting = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(true));
        let context_length = engine.config().context_length;
        let (w, r) = (waiting.clone(), running.clone());
        std::thread::Builder::new()
            .name("luodi-engine".into())
            .spawn(move || {
                for job in jobs {
                    w.fetch_sub(1, Ordering::SeqCst);
                    r.fetch_add(1, Ordering::SeqCst);
                    run_job(&engine, job);
                    r.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .expect("spawning the engine thread");
        Self { model_id, context_length, queue, waiting, running, ready }
    }
}

fn run_job(engine: &Engine, job: Job) {
    let Job { request, reply } = job;
    if reply.is_closed() {
        return; // the client left while queued
    }
    let tok = engine.tokenizer();
    let deadline = request.deadline;
    let mut timed_out = false;
    let req = GenerateRequest {
        prompt: request.prompt,
        max_tokens: request.max_tokens,
        sampling: request.sampling,
        stop: request.stop,
    };
    let want_logprobs = request.logprobs;
    let result = engine.generate(&req, |event| {
        let info = match (want_logprobs, event.token) {
            (true, Some(t)) => Some(TokenInfo {
                token: String::from_utf8_lossy(tok.token_bytes(t.id)).into_owned(),
                bytes: tok.token_bytes(t.id).to_vec(),
                logprob: t.logprob,
                top: t
                    .top
                    .iter()
                    .map(|a| {
                        let b = tok.token_bytes(a.id);
                        (String::from_utf8_lossy(b).into_owned(), a.logprob, b.to_vec())
                    })
                    .collect(),
            }),
            _ => None,
        };
        if reply.send(Ok(GenEvent::Token { text: event.text.to_string(), info })).is_err() {
            return ControlFlow::Break(()); // client disconnected
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    let message = match result {
        Ok(out) => {
            let finish_reason = match out.finish_reason {
                FinishReason::Stop => "stop",
                FinishReason::Length => "length",
                // Cancelled by the deadline: the answer was cut short, as by max_tokens.
                FinishReason::Cancelled if timed_out => "length",
                FinishReason::Cancelled => "cancelled",
            };
            metrics::counter!("luodi_prompt_tokens_total").increment(out.prompt_tokens as u64);
            metrics::counter!("luodi_completion_tokens_total").increment(out.completion_tokens() as u64);
            Ok(GenEvent::Done(Finished {
                finish_reason,
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.completion_tokens(),
            }))
        }
        Err(e) => Err(ApiError::from(e)),
    };
    let _ = reply.send(message);
}

impl Backend for EngineBackend {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn submit(&self, request: GenRequest) -> Result<EventStream, ApiError> {
        let (reply, events) = mpsc::unbounded_channel();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(Job { request, reply }) {
            Ok(()) => Ok(events),
            Err(TrySendError::Full(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(ApiError::overloaded(1))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                self.ready.store(false, Ordering::SeqCst);
                Err(ApiError::not_ready())
            }
        }
    }

    fn load(&self) -> (usize, usize) {
        (self.waiting.load(Ordering::SeqCst), self.running.load(Ordering::SeqCst))
    }
}
