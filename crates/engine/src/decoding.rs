//! What happens to one sequence after each forward pass: sample, check end-of-generation,
//! detokenize, hold back possible stop strings, emit text. Shared by the single-stream loop
//! (`Engine::generate_in`) and the batched one (`batch`), so both end sequences the same way.

use crate::detokenizer::IncrementalDecoder;
use crate::engine::{FinishReason, GenerateOutput, GenerateRequest, Timings, TokenEvent};
use crate::error::Result;
use crate::sampler::Sampler;
use crate::stop::StopMatcher;
use crate::tokenizer::Tokenizer;
use std::ops::ControlFlow;
use std::time::Instant;

/// Whether the sequence goes on after a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Feed this token back to the model.
    Continue(u32),
    /// Finished; the reason is in the output. Call [`Decoding::finish`].
    Done,
}

pub(crate) struct Decoding {
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    max_tokens: usize,
    started: Instant,
    pub out: GenerateOutput,
}

impl Decoding {
    /// `started` is when the request arrived: time to first token counts from there.
    pub fn new(request: &GenerateRequest, prompt_tokens: usize, started: Instant) -> Result<Self> {
        Ok(Self {
            sampler: Sampler::new(request.sampling.clone())?,
            decoder: IncrementalDecoder::new(true),
            stops: StopMatcher::new(request.stop.clone()),
            max_tokens: request.max_tokens,
            started,
            out: GenerateOutput {
                text: String::new(),
                tokens: Vec::new(),
                logprobs: Vec::new(),
                finish_reason: FinishReason::Length,
                prompt_tokens,
                timings: Timings { prompt_tokens, ..Default::default() },
            },
        })
    }

    /// Samples the next token from `logits` (the model's output after `history`, which is
    /// the prompt and every token generated so far) and emits its text.
    pub fn step(
        &mut self,
        tok: &Tokenizer,
        logits: &mut [f32],
        history: &[u32],
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Next {
        if self.out.tokens.len() >= self.max_tokens {
            return Next::Done;
        }
        let token = self.sampler.sample(logits, history);
        if self.out.tokens.is_empty() {
            self.out.timings.time_to_first_token = self.started.elapsed();
        }
        if tok.eog_token_ids().contains(&token.id) {
            self.out.finish_reason = FinishReason::Stop;
            return Next::Done;
        }
        let id = token.id;
        self.out.tokens.push(id);
        let piece = self.decoder.push(tok, id);
        let check = self.stops.push(piece);
        self.out.text.push_str(&check.emit);
        let flow = on_token(TokenEvent { token: Some(&token), text: &check.emit });
        self.out.logprobs.push(token);
        if check.stopped {
            self.out.finish_reason = FinishReason::Stop;
            return Next::Done;
        }
        if flow.is_break() {
            self.out.finish_reason = FinishReason::Cancelled;
            return Next::Done;
        }
        if self.out.tokens.len() == self.max_tokens {
            return Next::Done;
        }
        Next::Continue(id)
    }

    /// Flushes text held back (a partial character or a possible stop string) and returns
    /// the output. `reason` overrides the finish reason (cancellation from outside).
    pub fn finish(
        mut self,
        reason: Option<FinishReason>,
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> GenerateOutput {
        if let Some(reason) = reason {
            self.out.finish_reason = reason;
        }
        if !self.stops.is_stopped() {
            let tail = self.decoder.finish();
            let check = self.stops.push(&tail);
            let mut tail = check.emit;
            if check.stopped {
                self.out.finish_reason = FinishReason::Stop;
            } else {
                tail.push_str(&self.stops.finish());
            }
            if !tail.is_empty() {
                self.out.text.push_str(&tail);
                let _ = on_token(TokenEvent { token: None, text: &tail });
            }
        }
        self.out
    }
}
