//! The engine against llama.cpp on the real bundled models: rendered chat prompts, prompt
//! tokens, greedy completions and top-3 log-probabilities from
//! ../shared/fixtures/llamacpp-greedy.json.
//!
//! These tests need the model files; a missing file fails with the command to run.

use luodi_engine::{ChatMessage, Engine, FinishReason, GenerateRequest, Prompt, SamplingParams};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Fixture {
    models: std::collections::BTreeMap<String, ModelCases>,
}

#[derive(Deserialize)]
struct ModelCases {
    file: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    messages: Option<Vec<ChatMessage>>,
    raw: Option<String>,
    rendered_prompt: String,
    prompt_tokens: Vec<u32>,
    completion_tokens: Vec<u32>,
    stop_type: String,
    top3_per_step: Vec<Vec<Top>>,
    #[serde(default)]
    completion_tokens_llamacpp_1_thread_ubatch16: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct Top {
    id: u32,
    logprob: f32,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/llamacpp-greedy.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

fn model_path(name: &str, file: &str) -> PathBuf {
    let home = std::env::var_os("LUODI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".luodi"));
    let path = home.join("models").join(name).join(file);
    assert!(path.is_file(), "{} is missing: run `luodi models fetch {name}` (or scripts/test)", path.display());
    path
}

/// Greedy completion vs the reference. Passing means: same prompt tokens; the first 8
/// completion tokens equal; at any later divergence the reference's own top-3 shows the two
/// candidates nearly tied (or llama.cpp itself chose ours with another thread count).
fn check_model(name: &str) -> (usize, usize) {
    let fixture = fixture();
    let cases = &fixture.models[name];
    let engine = Engine::load(&model_path(name, &cases.file)).expect("model loads");
    let mut full_matches = 0;
    for case in &cases.cases {
        let prompt = match (&case.messages, &case.raw) {
            (Some(messages), _) => {
                assert_eq!(engine.render_chat(messages).unwrap(), case.rendered_prompt, "{}: rendered prompt", case.id);
                Prompt::Chat(messages.clone())
            }
            (None, Some(raw)) => Prompt::Raw(raw.clone()),
            _ => panic!("{}: case has neither messages nor raw", case.id),
        };
        assert_eq!(engine.tokenize_prompt(&prompt).unwrap(), case.prompt_tokens, "{}: prompt tokens", case.id);

        let reference = &case.completion_tokens;
        let ends_with_eos = case.stop_type == "eos";
        let request = GenerateRequest {
            prompt,
            max_tokens: reference.len() + usize::from(ends_with_eos),
            sampling: SamplingParams { top_logprobs: 3, ..SamplingParams::greedy() },
            stop: vec![],
        };
        let out = engine.generate(&request, |_| std::ops::ControlFlow::Continue(())).unwrap();
        let ours = &out.tokens;
        let agree = ours.iter().zip(reference).take_while(|(a, b)| a == b).count();
        assert!(
            agree >= 8.min(reference.len()),
            "{}: only {agree} leading tokens agree: ours {ours:?} vs {reference:?}",
            case.id
        );

        // Log-probabilities agree where the tokens do.
        for (step, (token, tops)) in out.logprobs.iter().zip(&case.top3_per_step).take(agree).enumerate() {
            let ref_best = tops[0].logprob;
            assert!(
                (token.logprob - ref_best).abs() < 0.25,
                "{} step {step}: logprob {} vs reference {ref_best}",
                case.id,
                token.logprob
            );
        }
        if agree == reference.len() && ours.len() == reference.len() {
            if ends_with_eos {
                assert_eq!(out.finish_reason, FinishReason::Stop, "{}: should stop at EOS", case.id);
            }
            full_matches += 1;
            continue;
        }
        // A divergence: the reference must show our token as a near-tie at that step.
        let step = agree;
        let ours_tok = ours.get(step).copied();
        let alt_ok = case
            .completion_tokens_llamacpp_1_thread_ubatch16
            .as_ref()
            .is_some_and(|alt| ours.len() > step && alt.len() > step && alt[..=step] == ours[..=step]);
        let tops = &case.top3_per_step[step];
        let near_tie = ours_tok
            .and_then(|t| tops.iter().find(|c| c.id == t))
            .is_some_and(|c| tops[0].logprob - c.logprob < 0.5);
        eprintln!(
            "{name}/{}: diverges at step {step}: ours {ours_tok:?}, reference {} (top3 {:?}); near tie: {near_tie}, llama.cpp 1-thread agrees with ours: {alt_ok}",
            case.id,
            reference[step],
            tops.iter().map(|t| (t.id, t.logprob)).collect::<Vec<_>>()
        );
        assert!(near_tie || alt_ok, "{}: divergence at step {step} is not a near tie", case.id);
    }
    eprintln!("{name}: {full_matches}/{} completions equal llama.cpp's in full", cases.cases.len());
    (full_matches, cases.cases.len())
}

#[test]
fn smollm2_matches_llamacpp() {
    let (full, total) = check_model("smollm2-135m");
    assert!(full * 2 > total, "most completions must equal the reference in full: {full}/{total}");
}

#[test]
fn gemma3_matches_llamacpp() {
    let (full, total) = check_model("gemma3-270m");
    assert!(full * 2 > total, "most completions must equal the reference in full: {full}/{total}");
}
