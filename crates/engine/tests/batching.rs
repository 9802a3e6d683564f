//! Continuous batching on the real default model: a request's greedy output is the same
//! token sequence whether it runs alone or among 16 others joining and leaving the batch,
//! with chunked prefills and KV preemption in between.

use luodi_engine::batch::{BatchConfig, BatchEngine, SequenceSink};
use luodi_engine::{ChatMessage, Engine, EngineError, FinishReason, GenerateOutput, GenerateRequest, Prompt};
use luodi_engine::{SamplingParams, TokenEvent};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let home = std::env::var_os("LUODI_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".luodi"));
        let path = home.join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(path.is_file(), "{} is missing: run `luodi models fetch smollm2-135m`", path.display());
        Engine::load(&path).expect("model loads")
    })
}

const QUESTIONS: [&str; 16] = [
    "How do I reset my online banking password?",
    "What are your opening hours on weekends?",
    "我的信用卡账单什么时候出？",
    "Can I change the delivery address of an order that has already shipped?",
    "How long does a refund take to reach my account?",
    "请问如何修改绑定的手机号码？",
    "Write a short apology to a customer whose parcel arrived damaged.",
    "What documents do I need to open a business account?",
    "Explain the difference between a debit card and a credit card in two sentences.",
    "我想取消自动续费，应该怎么操作？",
    "Is there a fee for international transfers?",
    "My card was swallowed by an ATM. What should I do?",
    "Summarize our return policy: 30 days, unused items, original packaging, receipt required.",
    "How can I report a lost phone that has my banking app on it?",
    "您好，我的快递三天了还没到，能帮我查一下吗？",
    "Translate to French: Thank you for your patience, your request is being processed.",
];

fn request(question: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Chat(vec![
            ChatMessage::new("system", "You are a helpful customer service assistant."),
            ChatMessage::new("user", question),
        ]),
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    }
}

type Results = Arc<Mutex<Vec<(usize, Result<GenerateOutput, String>, String)>>>;

/// Collects a sequence's streamed text and final output under its index.
struct Collect {
    index: usize,
    text: String,
    cancel_after: Option<usize>,
    tokens: usize,
    results: Results,
}

impl SequenceSink for Collect {
    fn on_token(&mut self, _: &luodi_engine::tokenizer::Tokenizer, event: TokenEvent<'_>) -> ControlFlow<()> {
        self.text.push_str(event.text);
        self.tokens += usize::from(event.token.is_some());
        match self.cancel_after {
            Some(n) if self.tokens >= n => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }

    fn is_cancelled(&self) -> bool {
        false
    }

    fn on_finish(&mut self, result: luodi_engine::Result<GenerateOutput>) {
        let text = std::mem::take(&mut self.text);
        self.results.lock().unwrap().push((self.index, result.map_err(|e| e.to_string()), text));
    }
}

fn solo(req: &GenerateRequest) -> GenerateOutput {
    engine().generate(req, |_| ControlFlow::Continue(())).expect("solo generation")
}

/// Runs `requests` through one batch engine; request `i` joins after `join_at[i]` steps.
fn batched(config: BatchConfig, requests: &[GenerateRequest], join_at: &[usize]) -> (Vec<GenerateOutput>, usize) {
    let results: Results = Arc::default();
    let mut batch = BatchEngine::new(engine(), config);
    let mut step = 0;
    let mut submitted = 0;
    let mut preempted = 0;
    let mut max_seqs = 0;
    while submitted < requests.len() || !batch.is_idle() {
        for (i, req) in requests.iter().enumerate() {
            if join_at[i] == step {
                let sink =
                    Collect { index: i, text: String::new(), cancel_after: None, tokens: 0, results: results.clone() };
                batch.submit(req, Box::new(sink));
                submitted += 1;
            }
        }
        let report = batch.step();
        preempted += report.preempted;
        max_seqs = max_seqs.max(report.seqs);
        step += 1;
        assert!(step < 5_000, "the batch makes progress");
    }
    assert!(max_seqs > 1, "requests actually shared forward passes");
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|r| r.0);
    assert_eq!(results.len(), requests.len(), "every request finished exactly once");
    let outputs = results
        .into_iter()
        .map(|(i, r, streamed)| {
            let out = r.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!(out.text, streamed, "request {i}: streamed text equals the final text");
            out
        })
        .collect();
    (outputs, preempted)
}

fn assert_same(solo: &GenerateOutput, batched: &GenerateOutput, what: &str) {
    assert_eq!(
        solo.tokens, batched.tokens,
        "{what}: tokens differ\nsolo:    {:?}\nbatched: {:?}",
        solo.text, batched.text
    );
    assert_eq!(solo.text, batched.text, "{what}");
    assert_eq!(solo.finish_reason, batched.finish_reason, "{what}");
    assert_eq!(solo.prompt_tokens, batched.prompt_tokens, "{what}");
}

#[test]
fn sixteen_concurrent_requests_match_their_solo_greedy_outputs() {
    let requests: Vec<GenerateRequest> = QUESTIONS.iter().map(|q| request(q, 40)).collect();
    let solos: Vec<GenerateOutput> = requests.iter().map(solo).collect();
    // A small token budget forces chunked prefills that share passes with running decodes;
    // a third of the requests join while others are mid-answer.
    let config = BatchConfig { max_num_seqs: 16, max_batch_tokens: 48, ..BatchConfig::default() };
    let join_at: Vec<usize> = (0..16).map(|i| if i % 3 == 2 { 5 + i } else { 0 }).collect();
    let (outs, _) = batched(config, &requests, &join_at);
    for (i, (s, b)) in solos.iter().zip(&outs).enumerate() {
        assert_same(s, b, &format!("request {i} ({})", QUESTIONS[i]));
    }
}

#[test]
fn preempted_and_recomputed_sequences_still_match() {
    let requests: Vec<GenerateRequest> = QUESTIONS[..6].iter().map(|q| request(q, 48)).collect();
    let solos: Vec<GenerateOutput> = requests.iter().map(solo).collect();
    // KV for ~160 tokens in all: six conversations of ~40-60 prompt tokens cannot all grow.
    let per_token = engine().config().kv_layout().bytes_per_token();
    let config =
        BatchConfig { max_num_seqs: 6, max_batch_tokens: 256, kv_memory_bytes: per_token * 160, block_size: 16 };
    let (outs, preempted) = batched(config, &requests, &[0; 6]);
    assert!(preempted > 0, "the budget was small enough to preempt");
    for (i, (s, b)) in solos.iter().zip(&outs).enumerate() {
        assert_same(s, b, &format!("request {i}"));
    }
}

#[test]
fn a_cancelled_sequence_leaves_at_once_and_others_are_unaffected() {
    let requests: Vec<GenerateRequest> = QUESTIONS[..3].iter().map(|q| request(q, 24)).collect();
    let results: Results = Arc::default();
    let mut batch = BatchEngine::new(engine(), BatchConfig::default());
    for (i, req) in requests.iter().enumerate() {
        let cancel_after = (i == 1).then_some(3);
        batch.submit(
            req,
            Box::new(Collect { index: i, text: String::new(), cancel_after, tokens: 0, results: results.clone() }),
        );
    }
    while !batch.is_idle() {
        batch.step();
    }
    assert_eq!(batch.stats().used_blocks, 0, "every block was returned");
    let results = results.lock().unwrap();
    let cancelled = results.iter().find(|r| r.0 == 1).unwrap().1.as_ref().unwrap();
    assert_eq!(cancelled.finish_reason, FinishReason::Cancelled);
    assert_eq!(cancelled.tokens.len(), 3);
    for i in [0, 2] {
        let out = results.iter().find(|r| r.0 == i).unwrap().1.as_ref().unwrap();
        assert_eq!(out.tokens, solo(&requests[i]).tokens);
    }
}

#[test]
fn prompts_the_kv_budget_cannot_hold_are_refused_with_a_clear_error() {
    let per_token = engine().config().kv_layout().bytes_per_token();
    let config = BatchConfig { kv_memory_bytes: per_token * 32, ..BatchConfig::default() };
    let results: Results = Arc::default();
    let mut batch = BatchEngine::new(engine(), config);
    let long = "Please describe the account opening process in detail. ".repeat(8);
    batch.submit(
        &request(&long, 8),
        Box::new(Collect { index: 0, text: String::new(), cancel_after: None, tokens: 0, results: results.clone() }),
    );
    assert!(batch.is_idle());
    let results = results.lock().unwrap();
    let err = results[0].1.as_ref().unwrap_err();
    assert!(err.contains("KV memory budget holds 32"), "{err}");
    let _ = EngineError::KvBudgetExceeded { tokens: 0, capacity: 0 };
}
