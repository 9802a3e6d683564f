//! Continuous batching executor: runs the [`Scheduler`]'s plan one forward pass at a time.
//!
//! Every step, each scheduled sequence contributes its tokens (one for a decode, a chunk
//! for a prefill) to a single `Model::forward`; the weights are read once for all of them.
//! Sequences join between steps and leave as soon as they finish or are cancelled, and
//! their caches are freed at once. A sequence's output does not depend on what else is in
//! the batch: matmul rows, norms and attention are computed per row or per sequence (see
//! the `batch_equivalence` test on the real model).

use crate::decoding::{Decoding, Next};
use crate::engine::{Engine, FinishReason, GenerateOutput, GenerateRequest, TokenEvent};
use crate::error::{EngineError, Result};
use crate::kv_cache::SequenceKv;
use crate::model::SeqBatch;
use crate::scheduler::{AddError, Scheduler, SchedulerConfig, SchedulerStats, SeqId};
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Where a sequence's output goes (the server's per-request channel, a test's vector).
pub trait SequenceSink: Send {
    /// Text that became final (may be empty). `Break` ends the sequence: the client left.
    /// The tokenizer is lent for callers that report token bytes (logprobs).
    fn on_token(&mut self, tokenizer: &Tokenizer, event: TokenEvent<'_>) -> ControlFlow<()>;
    /// Polled before every step, also while queued: true when the client went away or the
    /// request's deadline passed.
    fn is_cancelled(&self) -> bool;
    /// The sequence left the queue and started (called once, before its first token).
    fn on_admitted(&mut self) {}
    /// Called once with the output, or with the error that ended the sequence.
    fn on_finish(&mut self, result: Result<GenerateOutput>);
}

/// Limits of the batch: sequences and tokens per forward pass, and KV memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    pub max_num_seqs: usize,
    pub max_batch_tokens: usize,
    /// KV cache budget in bytes across all sequences.
    pub kv_memory_bytes: usize,
    pub block_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_num_seqs: 16, max_batch_tokens: 512, kv_memory_bytes: 1 << 30, block_size: 16 }
    }
}

/// What one step did, for metrics.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub seqs: usize,
    pub tokens: usize,
    /// Time in the queue of each sequence admitted for the first time this step.
    pub queue_times: Vec<Duration>,
    pub preempted: usize,
    pub finished: usize,
    pub stats: SchedulerStats,
}

struct Live {
    /// Prompt and every token generated so far.
    tokens: Vec<u32>,
    /// `None` while queued or after preemption.
    kv: Option<SequenceKv>,
    decoding: Decoding,
    sink: Box<dyn SequenceSink>,
    enqueued: Instant,
    admitted_once: bool,
    prefill_started: Option<Instant>,
}

pub struct BatchEngine<'e> {
    engine: &'e Engine,
    scheduler: Scheduler,
    live: HashMap<SeqId, Live>,
    next_id: SeqId,
}

impl<'e> BatchEngine<'e> {
    pub fn new(engine: &'e Engine, config: BatchConfig) -> Self {
        let block_bytes = engine.config().kv_layout().bytes_per_token() * config.block_size.max(1);
        let scheduler = Scheduler::new(SchedulerConfig {
            max_num_seqs: config.max_num_seqs,
            max_batch_tokens: config.max_batch_tokens,
            block_size: config.block_size,
            total_blocks: config.kv_memory_bytes / block_bytes.max(1),
        });
        Self { engine, scheduler, live: HashMap::new(), next_id: 0 }
    }

    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Tokens the KV budget holds in all.
    pub fn kv_capacity_tokens(&self) -> usize {
        self.scheduler.config().capacity_tokens()
    }

    pub fn is_idle(&self) -> bool {
        self.live.is_empty()
    }

    pub fn stats(&self) -> SchedulerStats {
        self.scheduler.stats()
    }

    /// Queues a request. Errors (an empty or too long prompt, bad sampling parameters)
    /// go to the sink at once.
    pub fn submit(&mut self, request: &GenerateRequest, mut sink: Box<dyn SequenceSink>) {
        let enqueued = Instant::now();
        match self.prepare(request, enqueued) {
            Ok((tokens, decoding)) => {
                let id = self.next_id;
                self.next_id += 1;
                let limit = tokens.len() + request.max_tokens;
                match self.scheduler.add(id, tokens.len(), limit) {
                    Ok(()) => {
                        let live = Live {
                            tokens,
                            kv: None,
                            decoding,
                            sink,
                            enqueued,
                            admitted_once: false,
                            prefill_started: None,
                        };
                        self.live.insert(id, live);
                    }
                    Err(AddError::TooLarge { tokens, capacity }) => {
                        sink.on_finish(Err(EngineError::KvBudgetExceeded { tokens, capacity }))
                    }
                    Err(AddError::DuplicateId(id)) => {
                        sink.on_finish(Err(EngineError::BatchFailed(format!("sequence id {id} reused"))))
                    }
                }
            }
            Err(e) => sink.on_finish(Err(e)),
        }
    }

    fn prepare(&self, request: &GenerateRequest, enqueued: Instant) -> Result<(Vec<u32>, Decoding)> {
        let prompt = self.engine.tokenize_prompt(&request.prompt)?;
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { field: "prompt", message: "must not be empty".into() });
        }
        let ctx = self.engine.config().context_length;
        if prompt.len() + request.max_tokens > ctx {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: request.max_tokens,
                context_length: ctx,
            });
        }
        let decoding = Decoding::new(request, prompt.len(), enqueued)?;
        Ok((prompt, decoding))
    }

    /// Runs one forward pass over the scheduled sequences (nothing when idle).
    pub fn step(&mut self) -> StepReport {
        let mut report = StepReport::default();
        self.drop_cancelled(&mut report);
        let plan = self.scheduler.schedule();
        for id in &plan.preempted {
            if let Some(live) = self.live.get_mut(id) {
                live.kv = None; // recomputed on resumption
            }
        }
        for &id in &plan.exhausted {
            // The KV budget cannot hold this sequence any longer: end it as `max_tokens` would.
            self.finish(id, Some(FinishReason::Length), &mut report);
        }
        for &id in &plan.admitted {
            if let Some(live) = self.live.get_mut(&id) {
                if !live.admitted_once {
                    live.admitted_once = true;
                    live.sink.on_admitted();
                    live.prefill_started = Some(Instant::now());
                    report.queue_times.push(live.enqueued.elapsed());
                }
            }
        }
        report.seqs = plan.seqs.len();
        report.tokens = plan.tokens();
        report.preempted = plan.preempted.len();
        if !plan.seqs.is_empty() {
            if let Err(e) = self.run(&plan.seqs, &mut report) {
                // A failed pass leaves the caches of every sequence in it undefined.
                let message = e.to_string();
                for item in &plan.seqs {
                    self.scheduler.remove(item.id);
                    if let Some(mut live) = self.live.remove(&item.id) {
                        live.sink.on_finish(Err(EngineError::BatchFailed(message.clone())));
                        report.finished += 1;
                    }
                }
            }
        }
        report.stats = self.scheduler.stats();
        report
    }

    fn drop_cancelled(&mut self, report: &mut StepReport) {
        let cancelled: Vec<SeqId> =
            self.live.iter().filter(|(_, live)| live.sink.is_cancelled()).map(|(&id, _)| id).collect();
        for id in cancelled {
            self.finish(id, Some(FinishReason::Cancelled), report);
        }
    }

    fn run(&mut self, plan: &[crate::scheduler::ScheduledSeq], report: &mut StepReport) -> Result<()> {
        let engine = self.engine;
        let layout = engine.config().kv_layout();
        let wanted: HashMap<SeqId, usize> = plan.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        // Caches sized to what the scheduler granted (its blocks), created on admission.
        for item in plan {
            let live = self.live.get_mut(&item.id).ok_or_else(|| missing(item.id))?;
            match &mut live.kv {
                Some(kv) => kv.reserve_exact(item.capacity),
                None => live.kv = Some(SequenceKv::new(layout, item.capacity, &candle_core::Device::Cpu)?),
            }
        }
        let mut order = vec![0; plan.len()];
        let mut batch: Vec<SeqBatch<'_>> = Vec::with_capacity(plan.len());
        for (&id, live) in self.live.iter_mut() {
            if let Some(&i) = wanted.get(&id) {
                let item = &plan[i];
                let kv = live.kv.as_mut().ok_or_else(|| missing(id))?;
                order[batch.len()] = i;
                batch.push(SeqBatch { tokens: &live.tokens[item.start..item.start + item.count], kv });
            }
        }
        let logits = engine.model().forward(&mut batch)?;
        drop(batch);
        let vocab = logits.dim(1)?;
        let mut logits = logits.flatten_all()?.to_vec1::<f32>()?;
        for (row, &i) in order.iter().enumerate() {
            let item = &plan[i];
            self.scheduler.on_computed(item.id, item.count);
            let live = self.live.get_mut(&item.id).ok_or_else(|| missing(item.id))?;
            if item.start + item.count < live.tokens.len() {
                continue; // prefill not finished: these logits are not needed
            }
            if let Some(t) = live.prefill_started.take() {
                live.decoding.out.timings.prefill = t.elapsed();
                live.decoding.out.timings.prefilled_tokens = live.tokens.len();
            }
            let row_logits = &mut logits[row * vocab..(row + 1) * vocab];
            let (sink, tok) = (&mut live.sink, engine.tokenizer());
            let next = live.decoding.step(tok, row_logits, &live.tokens, &mut |e| sink.on_token(tok, e));
            match next {
                Next::Continue(token) => {
                    live.tokens.push(token);
                    self.scheduler.on_token(item.id);
                }
                Next::Done => self.finish(item.id, None, report),
            }
        }
        Ok(())
    }

    fn finish(&mut self, id: SeqId, reason: Option<FinishReason>, report: &mut StepReport) {
        self.scheduler.remove(id);
        if let Some(live) = self.live.remove(&id) {
            let Live { decoding, mut sink, enqueued, .. } = live;
            let tok = self.engine.tokenizer();
            let mut out = decoding.finish(reason, &mut |e| sink.on_token(tok, e));
            if !out.tokens.is_empty() {
                out.timings.decode = enqueued.elapsed().saturating_sub(out.timings.time_to_first_token);
            }
            sink.on_finish(Ok(out));
            report.finished += 1;
        }
    }
}

fn missing(id: SeqId) -> EngineError {
    EngineError::BatchFailed(format!("scheduled sequence {id} has no state"))
}
