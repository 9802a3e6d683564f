//! The semantic cache's threshold on the real all-MiniLM-L6-v2: precision and recall of
//! "same question" over the shipped labelled pairs (fixtures/paraphrase_pairs.jsonl: English
//! and Chinese customer-service questions, 40% paraphrases, the rest mostly hard negatives such
//! as password vs PIN or Saturday vs Sunday). Fails when precision at the default threshold is
//! below 0.98; prints the whole curve and the recall.

use luodi_cache::agreement::agree;
use luodi_cache::DEFAULT_THRESHOLD;
use luodi_engine::embedding::EmbeddingModel;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Pair {
    a: String,
    b: String,
    same: bool,
    lang: String,
}

fn model() -> EmbeddingModel {
    let home = std::env::var_os("LUODI_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".luodi"));
    let dir = home.join("models").join("minilm-l6");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `luodi models fetch minilm-l6`",
        dir.display()
    );
    EmbeddingModel::load(&dir).unwrap_or_else(|e| panic!("loading minilm-l6: {e}"))
}

/// (precision, recall, predicted positives) of `similarity >= threshold`.
fn score(scored: &[(f32, bool)], threshold: f32) -> (f64, f64, usize) {
    let tp = scored.iter().filter(|(s, same)| *s >= threshold && *same).count();
    let fp = scored.iter().filter(|(s, same)| *s >= threshold && !*same).count();
    let positives = scored.iter().filter(|(_, same)| *same).count();
    let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
    (precision, tp as f64 / positives.max(1) as f64, tp + fp)
}

#[test]
fn semantic_threshold() {
    let pairs: Vec<Pair> = include_str!("fixtures/paraphrase_pairs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad fixture line {l}: {e}")))
        .collect();
    assert!(pairs.len() >= 300, "the pair set shrank to {}", pairs.len());
    let model = model();
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    let vectors = model.embed(&texts).unwrap().vectors;
    // A pair counts as a hit when its cosine passes the threshold and its terms agree, as in
    // the cache; pairs whose terms disagree can never hit, whatever the threshold.
    let scored: Vec<(String, f32, bool)> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (a, b) = (&vectors[2 * i], &vectors[2 * i + 1]);
            let cosine = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            (p.lang.clone(), if agree(&p.a, &p.b) { cosine } else { f32::NEG_INFINITY }, p.same)
        })
        .collect();
    for lang in ["all", "en", "zh"] {
        let subset: Vec<(f32, bool)> =
            scored.iter().filter(|(l, _, _)| lang == "all" || l == lang).map(|(_, s, same)| (*s, *same)).collect();
        println!("{lang}: {} pairs", subset.len());
        println!("  threshold  precision  recall  hits");
        for t in (50..=99).step_by(2).map(|t| t as f32 / 100.0) {
            let (p, r, n) = score(&subset, t);
            println!("  {t:9.2}  {p:9.3}  {r:6.3}  {n:4}");
        }
    }
    let all: Vec<(f32, bool)> = scored.iter().map(|(_, s, same)| (*s, *same)).collect();
    let (precision, recall, hits) = score(&all, DEFAULT_THRESHOLD);
    println!("default threshold {DEFAULT_THRESHOLD}: precision {precision:.3}, recall {recall:.3}, {hits} hits");
    for ((lang, s, same), p) in scored.iter().zip(&pairs) {
        if *s >= DEFAULT_THRESHOLD && !same {
            println!("  false hit ({lang}, {s:.3}): {} | {}", p.a, p.b);
        }
    }
    assert!(precision >= 0.98, "precision {precision:.3} at the default threshold {DEFAULT_THRESHOLD}");
    assert!(recall > 0.0, "the default threshold never matches a paraphrase");
}
