//! The engine behind the backend seam: one OS thread owns the model and runs the continuous
//! batching loop (`luodi_engine::batch`): between forward passes it takes new requests off
//! the channel, and each pass serves every running sequence.
//!
//! A request's events go back on its own channel. When the client goes away its receiver
//! is dropped; the sequence is cancelled before the next pass and its KV freed.

use crate::convert;
use luodi_engine::batch::{BatchConfig, BatchEngine, SequenceSink, StepReport};
use luodi_engine::tokenizer::Tokenizer;
use luodi_engine::{Engine, FinishReason, GenerateOutput, GenerateRequest, TokenEvent};
use luodi_server::backend::{Backend, BackendError, EventStream, Finished, GenEvent, GenRequest, TokenInfo};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

type Reply = mpsc::UnboundedSender<Result<GenEvent, BackendError>>;

struct Job {
    request: GenRequest,
    reply: Reply,
}

/// Counters shared between the HTTP side (admission) and the engine thread.
#[derive(Default)]
struct Load {
    /// Accepted and not started yet (in the channel or the scheduler's queue): counted up
    /// on submit and down by the request's sink when it starts or ends unstarted, so
    /// admission control never reads a stale figure.
    waiting: AtomicUsize,
    running: AtomicUsize,
}

impl Load {
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

pub struct EngineBackend {
    model_id: String,
    context_length: usize,
    queue: Sender<Job>,
    max_waiting: usize,
    load: Arc<Load>,
    ready: Arc<AtomicBool>,
}

impl EngineBackend {
    /// Starts the engine thread. `max_waiting` bounds the requests waiting for a batch slot:
    /// past it, requests get 429 with `Retry-After`.
    pub fn start(engine: Engine, model_id: String, max_waiting: usize, batch: BatchConfig) -> Self {
        let (queue, jobs) = channel::<Job>();
        let load = Arc::new(Load::default());
        let ready = Arc::new(AtomicBool::new(true));
        let context_length = engine.config().context_length;
        let (thread_load, thread_ready) = (load.clone(), ready.clone());
        std::thread::Builder::new()
            .name("luodi-engine".into())
            .spawn(move || {
                run(&engine, batch, jobs, &thread_load);
                thread_ready.store(false, Ordering::SeqCst);
            })
            .expect("spawning the engine thread");
        Self { model_id, context_length, queue, max_waiting: max_waiting.max(1), load, ready }
    }
}

fn run(engine: &Engine, config: BatchConfig, jobs: std::sync::mpsc::Receiver<Job>, load: &Arc<Load>) {
    let mut batch = BatchEngine::new(engine, config);
    tracing::info!(
        max_num_seqs = config.max_num_seqs,
        max_batch_tokens = config.max_batch_tokens,
        kv_tokens = batch.kv_capacity_tokens(),
        "continuous batching ready"
    );
    metrics::gauge!("luodi_kv_capacity_tokens").set(batch.kv_capacity_tokens() as f64);
    loop {
        if batch.is_idle() {
            // Nothing to run: sleep until a request arrives (or the server shuts down).
            match jobs.recv() {
                Ok(job) => admit(&mut batch, job, load),
                Err(_) => return,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            admit(&mut batch, job, load);
        }
        let report = batch.step();
        publish(&report, load);
    }
}

fn admit(batch: &mut BatchEngine<'_>, job: Job, load: &Arc<Load>) {
    let Job { request, reply } = job;
    let generate = GenerateRequest {
        prompt: convert::prompt(request.prompt),
        max_tokens: request.max_tokens,
        sampling: convert::sampling(&request.sampling),
        stop: request.stop,
    };
    let sink = ChannelSink {
        reply,
        deadline: request.deadline,
        logprobs: request.logprobs,
        load: load.clone(),
        started: false,
    };
    batch.submit(&generate, Box::new(sink));
}

fn publish(report: &StepReport, load: &Load) {
    load.running.store(report.stats.running, Ordering::SeqCst);
    metrics::gauge!("luodi_running_sequences").set(report.stats.running as f64);
    metrics::gauge!("luodi_waiting_sequences").set(load.waiting() as f64);
    metrics::gauge!("luodi_kv_blocks_used").set(report.stats.used_blocks as f64);
    metrics::gauge!("luodi_kv_blocks_free").set(report.stats.free_blocks as f64);
    if report.seqs > 0 {
        metrics::histogram!("luodi_batch_size").record(report.seqs as f64);
        metrics::histogram!("luodi_batch_tokens").record(report.tokens as f64);
    }
    for t in &report.queue_times {
        metrics::histogram!("luodi_queue_time_seconds").record(t.as_secs_f64());
    }
    if report.preempted > 0 {
        metrics::counter!("luodi_preemptions_total").increment(report.preempted as u64);
    }
}

/// Sends a sequence's events to its HTTP handler.
struct ChannelSink {
    reply: Reply,
    deadline: Option<Instant>,
    logprobs: bool,
    load: Arc<Load>,
    started: bool,
}

impl ChannelSink {
    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl SequenceSink for ChannelSink {
    fn on_token(&mut self, tok: &Tokenizer, event: TokenEvent<'_>) -> ControlFlow<()> {
        let info = match (self.logprobs, event.token) {
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
        if self.reply.send(Ok(GenEvent::Token { text: event.text.to_string(), info })).is_err() {
            return ControlFlow::Break(()); // client disconnected
        }
        ControlFlow::Continue(())
    }

    fn is_cancelled(&self) -> bool {
        self.reply.is_closed() || self.timed_out()
    }

    fn on_admitted(&mut self) {
        self.started = true;
        self.load.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    fn on_finish(&mut self, result: luodi_engine::Result<GenerateOutput>) {
        if !self.started {
            self.started = true;
            self.load.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let message = match result {
            Ok(out) if out.finish_reason == FinishReason::Cancelled && out.tokens.is_empty() && self.timed_out() => {
                // The deadline passed before the first token: nothing to return but the reason.
                Err(BackendError::TimedOut)
            }
            Ok(out) => {
                let finish_reason = convert::finish_reason(out.finish_reason, self.timed_out());
                metrics::counter!("luodi_prompt_tokens_total").increment(out.prompt_tokens as u64);
                metrics::counter!("luodi_completion_tokens_total").increment(out.completion_tokens() as u64);
                Ok(GenEvent::Done(Finished {
                    finish_reason,
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.completion_tokens(),
                }))
            }
            Err(e) => Err(convert::error(e)),
        };
        let _ = self.reply.send(message);
    }
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

    fn submit(&self, request: GenRequest) -> Result<EventStream, BackendError> {
        if !self.is_ready() {
            return Err(BackendError::NotReady);
        }
        if self.load.waiting() >= self.max_waiting {
            metrics::counter!("luodi_rejected_total", "reason" => "queue_full").increment(1);
            return Err(BackendError::Overloaded { retry_after: 1 });
        }
        let (reply, events) = mpsc::unbounded_channel();
        self.load.waiting.fetch_add(1, Ordering::SeqCst);
        match self.queue.send(Job { request, reply }) {
            Ok(()) => Ok(events),
            Err(_) => {
                self.load.waiting.fetch_sub(1, Ordering::SeqCst);
                self.ready.store(false, Ordering::SeqCst);
                Err(BackendError::NotReady)
            }
        }
    }

    fn load(&self) -> (usize, usize) {
        (self.load.waiting(), self.load.running.load(Ordering::SeqCst))
    }
}
