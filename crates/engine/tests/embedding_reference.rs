//! all-MiniLM-L6-v2 embeddings against sentence-transformers on the real model: the full
//! vectors in fixtures/minilm-reference.json (written by scripts/embedding-reference.py),
//! token counts and truncation, batching, normalization and a semantic sanity check.
//!
//! These tests need the model files; a missing file fails with the command to run.

use luodi_engine::embedding::EmbeddingModel;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    text: String,
    token_count: usize,
    vector: Vec<f32>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = include_str!("fixtures/minilm-reference.json");
        serde_json::from_str(text).expect("fixture JSON")
    })
}

fn model_dir() -> PathBuf {
    let home = std::env::var_os("LUODI_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".luodi"));
    let dir = home.join("models").join("minilm-l6");
    // sentence_bert_config.json is optional to the loader (it falls back to 512 tokens), but
    // the reference truncates at its 256.
    for file in ["config.json", "model.safetensors", "tokenizer.json", "sentence_bert_config.json"] {
        let path = dir.join(file);
        assert!(path.is_file(), "{} is missing: run `luodi models fetch minilm-l6` (or scripts/test)", path.display());
    }
    dir
}

/// Loaded once for all tests in this file.
fn model() -> &'static EmbeddingModel {
    static MODEL: OnceLock<EmbeddingModel> = OnceLock::new();
    MODEL.get_or_init(|| EmbeddingModel::load(&model_dir()).unwrap_or_else(|e| panic!("loading minilm-l6: {e}")))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn texts() -> Vec<&'static str> {
    fixture().cases.iter().map(|c| c.text.as_str()).collect()
}

#[test]
fn shape_and_limits() {
    let model = model();
    assert_eq!(model.dimensions(), 384);
    assert_eq!(model.max_tokens(), fixture().max_seq_length);
}

#[test]
fn matches_sentence_transformers() {
    let out = model().embed(&texts()).unwrap();
    let (mut worst_cosine, mut worst_diff) = (1f32, 0f32);
    for (i, case) in fixture().cases.iter().enumerate() {
        assert_eq!(out.token_counts[i], case.token_count, "{}: token count", case.id);
        let similarity = cosine(&out.vectors[i], &case.vector);
        assert!(similarity > 0.9999, "{}: cosine {similarity} with the sentence-transformers vector", case.id);
        let max_diff = max_abs_diff(&out.vectors[i], &case.vector);
        assert!(max_diff < 1e-4, "{}: largest component difference {max_diff}", case.id);
        (worst_cosine, worst_diff) = (worst_cosine.min(similarity), worst_diff.max(max_diff));
    }
    eprintln!("minilm-l6 vs sentence-transformers: lowest cosine {worst_cosine}, largest difference {worst_diff}");
}

#[test]
fn long_input_is_truncated_to_max_tokens() {
    let long = &fixture().cases.iter().find(|c| c.id == "long_truncated").expect("long case").text;
    let out = model().embed(&[long.as_str()]).unwrap();
    assert_eq!(out.token_counts, vec![model().max_tokens()]);
    // Cutting further into the text must not change the vector: only the first tokens count.
    let longer = format!("{long} {long}");
    let doubled = model().embed(&[longer.as_str()]).unwrap();
    assert!(cosine(&out.vectors[0], &doubled.vectors[0]) > 0.999_999);
}

#[test]
fn paraphrase_scores_above_unrelated() {
    let out = model().embed(&texts()).unwrap();
    let by_id = |id: &str| &out.vectors[fixture().cases.iter().position(|c| c.id == id).unwrap()];
    let paraphrase = dot(by_id("cat"), by_id("cat_paraphrase"));
    let unrelated = dot(by_id("cat"), by_id("unrelated"));
    assert!(paraphrase > unrelated + 0.3, "paraphrase {paraphrase} vs unrelated {unrelated}");
}

#[test]
fn batch_equals_single_inputs() {
    let texts = texts();
    let batch = model().embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = model().embed(&[text]).unwrap();
        assert_eq!(single.token_counts[0], batch.token_counts[i]);
        let max_diff = max_abs_diff(&single.vectors[0], &batch.vectors[i]);
        assert!(max_diff < 1e-5, "{text:?}: padding changed the vector by up to {max_diff}");
    }
}

#[test]
fn vectors_are_unit_length() {
    for vector in model().embed(&texts()).unwrap().vectors {
        assert_eq!(vector.len(), 384);
        let norm = dot(&vector, &vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn no_inputs_give_no_vectors() {
    let out = model().embed(&[]).unwrap();
    assert!(out.vectors.is_empty() && out.token_counts.is_empty());
}

/// Throughput of a batch of 32 short sentences; run with `--nocapture` to see it.
#[test]
fn batch_of_32_short_sentences() {
    let sentences: Vec<String> =
        (0..32).map(|i| format!("Sentence number {i} talks about topic {} in a few words.", i % 7)).collect();
    let inputs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    model().embed(&inputs).unwrap(); // warm-up
    let runs = 5;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        assert_eq!(model().embed(&inputs).unwrap().vectors.len(), 32);
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("minilm-l6: {:.0} embeddings/s (batch of 32 short sentences)", (runs * 32) as f64 / seconds);
}
