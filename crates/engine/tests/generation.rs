//! Generation behaviour on the real default model: context limits, seeds, stop strings,
//! streaming text, and KV-cache reuse across turns.

use luodi_engine::{ChatMessage, Engine, EngineError, FinishReason, GenerateRequest, Prompt, SamplingParams};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::OnceLock;

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

fn chat(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::new("user", text)])
}

fn request(prompt: Prompt, max_tokens: usize, sampling: SamplingParams) -> GenerateRequest {
    GenerateRequest { prompt, max_tokens, sampling, stop: vec![] }
}

fn run(req: &GenerateRequest) -> (luodi_engine::GenerateOutput, Vec<String>) {
    let mut pieces = Vec::new();
    let out = engine()
        .generate(req, |e| {
            pieces.push(e.text.to_string());
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, pieces)
}

#[test]
fn prompt_longer_than_context_is_a_clear_error() {
    let long = "hello ".repeat(9000);
    let err =
        engine().generate(&request(Prompt::Raw(long), 16, SamplingParams::greedy()), |_| ControlFlow::Continue(()));
    match err {
        Err(EngineError::ContextOverflow { prompt_tokens, context_length, .. }) => {
            assert!(prompt_tokens > 8192);
            assert_eq!(context_length, 8192);
        }
        other => panic!("expected ContextOverflow, got {:?}", other.map(|o| o.text)),
    }
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let sampling = |seed| SamplingParams { temperature: 1.0, seed: Some(seed), ..SamplingParams::default() };
    let a = run(&request(chat("Tell me a story about a cat."), 24, sampling(42))).0;
    let b = run(&request(chat("Tell me a story about a cat."), 24, sampling(42))).0;
    let c = run(&request(chat("Tell me a story about a cat."), 24, sampling(7))).0;
    assert_eq!(a.tokens, b.tokens);
    assert_ne!(a.tokens, c.tokens, "another seed should sample differently within 24 tokens");
}

#[test]
fn streamed_pieces_are_whole_characters_and_add_up() {
    let (out, pieces) =
        run(&request(chat("Reply with three happy emoji 😀 and nothing else."), 24, SamplingParams::greedy()));
    assert_eq!(pieces.concat(), out.text);
    // The last piece may be a flush of a character cut by max_tokens; earlier ones never are.
    for piece in &pieces[..pieces.len().saturating_sub(1)] {
        assert!(!piece.contains('\u{FFFD}'), "broken character in streamed piece {piece:?}");
    }
    assert!(out.text.contains('🌟'), "{}", out.text);
    let (out, pieces) = run(&request(chat("请用一句话介绍你自己。"), 16, SamplingParams::greedy()));
    assert_eq!(pieces.concat(), out.text);
    assert!(out.text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{}", out.text);
}

#[test]
fn stop_string_ends_generation_and_is_not_emitted() {
    let mut req = request(Prompt::Raw("1, 2, 3, 4, 5,".into()), 24, SamplingParams::greedy());
    req.stop = vec![" 9".into()];
    let (out, pieces) = run(&req);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, " 6, 7, 8,");
    assert_eq!(pieces.concat(), out.text);
}

#[test]
fn max_tokens_ends_with_length() {
    let (out, _) = run(&request(chat("Write a long essay about banking."), 5, SamplingParams::greedy()));
    assert_eq!(out.completion_tokens(), 5);
    assert_eq!(out.finish_reason, FinishReason::Length);
}

#[test]
fn eos_ends_with_stop() {
    let prompt = chat("Summarize in one sentence: The factory increased raw material inventory turnover by 25 percent after combining historical production data with market forecasts.");
    let (out, _) = run(&request(prompt, 64, SamplingParams::greedy()));
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert!(out.completion_tokens() < 64);
}

#[test]
fn cancelling_from_the_callback_stops_early() {
    let req = request(chat("Count to one hundred."), 64, SamplingParams::greedy());
    let mut seen = 0;
    let out = engine()
        .generate(&req, |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.completion_tokens(), 3);
}

#[test]
fn second_turn_reuses_the_cache_and_answers_the_same() {
    let e = engine();
    let first = vec![ChatMessage::new("user", "My name is Li Wei.")];
    let mut session = e.new_session(256).unwrap();
    let out1 = e
        .generate_in(&mut session, &request(Prompt::Chat(first.clone()), 16, SamplingParams::greedy()), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let mut second = first;
    second.push(ChatMessage::new("assistant", out1.text.clone()));
    second.push(ChatMessage::new("user", "What is my name?"));
    let req2 = request(Prompt::Chat(second), 16, SamplingParams::greedy());
    let reused = e.generate_in(&mut session, &req2, |_| ControlFlow::Continue(())).unwrap();
    assert!(
        reused.timings.prefilled_tokens < reused.prompt_tokens,
        "a cached prefix must be reused: {:?}",
        reused.timings
    );
    let fresh = e.generate(&req2, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(reused.tokens, fresh.tokens, "reusing the cache must not change the answer");
}

#[test]
fn chat_on_a_template_renders_and_tokenizes_special_tokens() {
    let ids = engine().tokenize_prompt(&chat("hi")).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one control token");
    // Typed by a user in raw text, the same string is not a control token.
    let raw = engine().tokenize_prompt(&Prompt::Raw("<|im_start|>".into())).unwrap();
    assert_ne!(raw, vec![1]);
}
