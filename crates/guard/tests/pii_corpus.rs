//! Precision and recall per entity type on the labelled corpus (tests/fixtures/pii_corpus.jsonl,
//! made by gen_pii_corpus.py). A finding counts as correct only with the right type and the
//! exact labelled substring.

use std::collections::BTreeMap;

use luodi_guard::{EntityType, PiiDetector};
use serde::Deserialize;

#[derive(Deserialize)]
struct Row {
    text: String,
    entities: Vec<(String, String)>,
}

const MIN_PRECISION: f64 = 0.98;
const MIN_RECALL: f64 = 0.95;

#[derive(Default)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

#[test]
fn precision_and_recall_per_entity_type() {
    let corpus = include_str!("fixtures/pii_corpus.jsonl");
    let detector = PiiDetector::new();
    let mut counts: BTreeMap<EntityType, Counts> =
        EntityType::ALL.into_iter().map(|e| (e, Counts::default())).collect();
    let mut errors = Vec::new();
    let mut lines = 0;
    for (n, line) in corpus.lines().enumerate() {
        let row: Row = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        lines += 1;
        let mut expected: Vec<(EntityType, &str)> =
            row.entities.iter().map(|(t, v)| (t.parse().expect("known type"), v.as_str())).collect();
        for finding in detector.detect(&row.text) {
            let value = &row.text[finding.bytes.clone()];
            let c = counts.get_mut(&finding.entity).expect("all types counted");
            match expected.iter().position(|&(t, v)| t == finding.entity && v == value) {
                Some(i) => {
                    expected.swap_remove(i);
                    c.tp += 1;
                }
                None => {
                    c.fp += 1;
                    errors.push(format!(
                        "line {}: false positive {} {value:?} in {:?}",
                        n + 1,
                        finding.entity,
                        row.text
                    ));
                }
            }
        }
        for (t, v) in expected {
            counts.get_mut(&t).expect("all types counted").fn_ += 1;
            errors.push(format!("line {}: missed {t} {v:?} in {:?}", n + 1, row.text));
        }
    }
    assert!(lines >= 300, "the corpus has {lines} lines, expected at least 300");

    println!("{:<12} {:>5} {:>5} {:>5} {:>9} {:>7}", "entity", "tp", "fp", "fn", "precision", "recall");
    let mut failed = Vec::new();
    for (entity, c) in &counts {
        let precision = if c.tp + c.fp == 0 { 1.0 } else { f64::from(c.tp) / f64::from(c.tp + c.fp) };
        let recall = if c.tp + c.fn_ == 0 { 1.0 } else { f64::from(c.tp) / f64::from(c.tp + c.fn_) };
        println!("{:<12} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}", entity.as_str(), c.tp, c.fp, c.fn_, precision, recall);
        assert!(c.tp + c.fn_ >= 10, "{entity}: the corpus needs at least 10 labelled examples");
        if precision < MIN_PRECISION || recall < MIN_RECALL {
            failed.push(entity.as_str());
        }
    }
    for e in &errors {
        println!("{e}");
    }
    assert!(failed.is_empty(), "below precision {MIN_PRECISION} / recall {MIN_RECALL}: {failed:?}");
}
