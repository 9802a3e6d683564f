//! Iteration-level (continuous) batching policy as a pure state machine: no tensors, no
//! threads, no clocks, so every admission, chunking and preemption decision is unit-tested.
//!
//! Each step the scheduler decides which sequences take part in the next forward pass and
//! how many of their tokens are computed:
//! 1. every running sequence that is decoding gets its one token (decodes are never stalled
//!    behind prefills);
//! 2. running sequences still in prefill get chunks from what is left of the step's token
//!    budget (`max_batch_tokens`), oldest first;
//! 3. waiting sequences are admitted strictly first-come first-served (the head of the queue
//!    is never skipped, so nothing starves) while there are sequence slots, token budget
//!    and KV blocks for their whole prompt.
//!
//! KV memory is counted in blocks of `block_size` tokens out of a fixed pool. A decoding
//! sequence that needs a block when none is free preempts the youngest running sequence:
//! its blocks are freed and it goes back to the front of the queue, to be recomputed
//! (prompt and tokens generated so far) when blocks are free again. Sequences grow by a
//! quarter of what they hold (at least one block) so long answers do not reallocate every
//! block, never past their own limit (prompt + max_tokens).

use std::collections::{HashMap, VecDeque};

pub type SeqId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most sequences in one forward pass.
    pub max_num_seqs: usize,
    /// Most tokens computed in one forward pass (decodes plus prefill chunks).
    pub max_batch_tokens: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks in the pool (the KV memory budget divided by the bytes of one block).
    pub total_blocks: usize,
}

impl SchedulerConfig {
    /// Tokens the whole pool holds.
    pub fn capacity_tokens(&self) -> usize {
        self.block_size * self.total_blocks
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    /// The sequence could never fit in the KV pool, even alone.
    TooLarge {
        tokens: usize,
        capacity: usize,
    },
    DuplicateId(SeqId),
}

#[derive(Debug, Clone)]
struct SeqState {
    /// Tokens known so far (prompt plus sampled).
    known: usize,
    /// Tokens whose keys and values are in the cache.
    computed: usize,
    /// Upper bound on `known` (prompt + max_tokens): growth never reserves past it.
    limit: usize,
    blocks: usize,
    /// Admission order among running sequences (smaller = older).
    admitted: u64,
    running: bool,
}

/// One sequence's share of the next forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: SeqId,
    /// Cache position of the first token to compute (tokens `start..start + count`).
    pub start: usize,
    pub count: usize,
    /// Tokens this sequence's cache may hold after this step (its blocks x block size).
    pub capacity: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences that lost their KV this step and went back to the queue: the executor
    /// drops their caches and recomputes them when they are scheduled again.
    pub preempted: Vec<SeqId>,
    /// Sequences admitted from the queue this step (for queue-time accounting).
    pub admitted: Vec<SeqId>,
    /// Sequences that need more KV than the whole pool holds (they run alone and still
    /// cannot grow): removed; the executor ends them as if `max_tokens` was reached.
    pub exhausted: Vec<SeqId>,
}

impl StepPlan {
    pub fn tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.count).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerStats {
    pub running: usize,
    pub waiting: usize,
    pub used_blocks: usize,
    pub free_blocks: usize,
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    seqs: HashMap<SeqId, SeqState>,
    waiting: VecDeque<SeqId>,
    /// Running sequences, oldest admission first.
    running: Vec<SeqId>,
    free_blocks: usize,
    next_admission: u64,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        let config = SchedulerConfig {
            max_num_seqs: config.max_num_seqs.max(1),
            max_batch_tokens: config.max_batch_tokens.max(1),
            block_size: config.block_size.max(1),
            total_blocks: config.total_blocks,
        };
        Self {
            config,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_blocks: config.total_blocks,
            next_admission: 0,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.config.block_size)
    }

    /// Queues a sequence with a prompt of `prompt_len` tokens that may grow to `limit`
    /// tokens (prompt + max_tokens).
    pub fn add(&mut self, id: SeqId, prompt_len: usize, limit: usize) -> Result<(), AddError> {
        if self.seqs.contains_key(&id) {
            return Err(AddError::DuplicateId(id));
        }
        // Admission needs the whole prompt plus the first sampled token's slot.
        let first = prompt_len + 1;
        if self.blocks_for(first) > self.config.total_blocks {
            return Err(AddError::TooLarge { tokens: first, capacity: self.config.capacity_tokens() });
        }
        let state = SeqState {
            known: prompt_len,
            computed: 0,
            limit: limit.max(first),
            blocks: 0,
            admitted: 0,
            running: false,
        };
        self.seqs.insert(id, state);
        self.waiting.push_back(id);
        Ok(())
    }

    /// The executor computed `count` tokens of `id` in the step just run.
    pub fn on_computed(&mut self, id: SeqId, count: usize) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.computed = (s.computed + count).min(s.known);
        }
    }

    /// The executor sampled a token for `id` and the sequence continues.
    pub fn on_token(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.known += 1;
            s.limit = s.limit.max(s.known + 1);
        }
    }

    /// Removes a finished or cancelled sequence (running or waiting) and frees its blocks.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.remove(&id) {
            self.free_blocks += s.blocks;
            if s.running {
                self.running.retain(|&r| r != id);
            } else {
                self.waiting.retain(|&w| w != id);
            }
        }
    }

    pub fn contains(&self, id: SeqId) -> bool {
        self.seqs.contains_key(&id)
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            used_blocks: self.config.total_blocks - self.free_blocks,
            free_blocks: self.free_blocks,
        }
    }

    /// Plans the next forward pass.
    pub fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let mut budget = self.config.max_batch_tokens;

        // 1. Decodes, oldest first; growing may preempt younger sequences.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let s = &self.seqs[&id];
            let decoding = s.computed > 0 && s.known - s.computed == 1;
            if !decoding {
                i += 1;
                continue;
            }
            if !self.ensure_blocks(id, s.computed + 1, &mut plan) {
                // It preempted itself: the youngest, with nothing younger to take from.
                continue;
            }
            let s = &self.seqs[&id];
            plan.seqs.push(self.item(id, s, 1));
            budget -= 1;
            // `running` may have shrunk from the end (preemptions); `i` is still this sequence.
            i += 1;
        }

        // 2. Prefill chunks of running sequences, oldest first.
        for &id in &self.running {
            if budget == 0 {
                break;
            }
            let s = &self.seqs[&id];
            let pending = s.known - s.computed;
            let decoding = s.computed > 0 && pending == 1;
            if decoding || pending == 0 {
                continue;
            }
            let count = pending.min(budget);
            plan.seqs.push(self.item(id, s, count));
            budget -= count;
        }

        // 3. Admission, strictly in arrival order.
        while budget > 0 && self.running.len() < self.config.max_num_seqs {
            let Some(&id) = self.waiting.front() else { break };
            let s = &self.seqs[&id];
            // The whole prompt (and the first sampled token) is reserved on admission, so an
            // admitted prefill never stalls for memory midway.
            let need = self.blocks_for(s.known + 1);
            if need > self.free_blocks {
                break;
            }
            self.waiting.pop_front();
            self.free_blocks -= need;
            let admitted = self.next_admission;
            self.next_admission += 1;
            let s = self.seqs.get_mut(&id).expect("queued sequences are tracked");
            s.blocks = need;
            s.running = true;
            s.admitted = admitted;
            s.computed = 0;
            self.running.push(id);
            plan.admitted.push(id);
            let s = &self.seqs[&id];
            let count = s.known.min(budget);
            plan.seqs.push(self.item(id, s, count));
            budget -= count;
        }
        plan
    }

    fn item(&self, id: SeqId, s: &SeqState, count: usize) -> ScheduledSeq {
        ScheduledSeq { id, start: s.computed, count, capacity: s.blocks * self.config.block_size }
    }

    /// Makes `id` hold blocks for `tokens` tokens, preempting the youngest running sequences
    /// when the pool is empty. Returns false when `id` itself had to be preempted.
    fn ensure_blocks(&mut self, id: SeqId, tokens: usize, plan: &mut StepPlan) -> bool {
        let needed = self.blocks_for(tokens);
        loop {
            let s = &self.seqs[&id];
            if s.blocks >= needed {
                return true;
            }
            let missing = needed - s.blocks;
            if self.free_blocks >= missing {
                // Grow by a quarter of what is held (at least what is missing), capped by the
                // sequence's own limit and by what is free.
                let cap = self.blocks_for(s.limit).max(needed) - s.blocks;
                let want = (s.blocks / 4).max(missing).min(cap).min(self.free_blocks);
                self.free_blocks -= want;
                self.seqs.get_mut(&id).expect("tracked").blocks += want;
                return true;
            }
            let Some(&victim) = self.running.last() else { return false };
            if victim == id && self.running.len() == 1 {
                // Nothing else holds blocks: the pool itself is too small for this sequence.
                self.remove(id);
                plan.exhausted.push(id);
                return false;
            }
            self.preempt(victim, plan);
            if victim == id {
                return false;
            }
        }
    }

    fn preempt(&mut self, id: SeqId, plan: &mut StepPlan) {
        self.running.retain(|&r| r != id);
        let s = self.seqs.get_mut(&id).expect("running sequences are tracked");
        self.free_blocks += s.blocks;
        s.blocks = 0;
        s.computed = 0;
        s.running = false;
        // Back to the front: it arrived before everything still waiting.
        self.waiting.push_front(id);
        plan.seqs.retain(|p| p.id != id);
        plan.preempted.push(id);
    }
}

#[cfg(test)]
mod tests;
