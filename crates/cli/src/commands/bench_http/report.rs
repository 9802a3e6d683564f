//! The report: a markdown table on stdout (a row as each level ends) or one JSON document.

use super::stats::LevelReport;
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
pub struct Report {
    pub url: String,
    pub model: String,
    pub max_tokens: u32,
    pub settings: Value,
    pub levels: Vec<LevelReport>,
}

pub fn table_header(url: &str, model: &str, max_tokens: u32, prompts: &str) -> String {
    format!(
        "url: {url}  model: {model}  max_tokens: {max_tokens}  prompts: {prompts}\n\
         (latencies in ms over successful requests; percentiles by linear interpolation; ~ = tokens estimated from chunks)\n\n\
         | level | ok | errors | req/s | out tok/s | e2e p50 | e2e p90 | e2e p99 | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | mean out tok | errors by type |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
}

pub fn table_row(l: &LevelReport) -> String {
    let est = if l.output_tokens_estimated { "~" } else { "" };
    let errors = if l.errors_by_type.is_empty() {
        "-".to_string()
    } else {
        l.errors_by_type.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
    };
    format!(
        "| {} | {} | {} | {:.2} | {est}{:.1} | {} | {} | {} | {} | {} | {} | {} | {est}{} | {errors} |",
        l.level,
        l.ok,
        l.errors,
        l.requests_per_s,
        l.output_tokens_per_s,
        ms(l.e2e_ms.p50),
        ms(l.e2e_ms.p90),
        ms(l.e2e_ms.p99),
        ms(l.ttft_ms.p50),
        ms(l.ttft_ms.p99),
        ms(l.itl_ms.p50),
        ms(l.itl_ms.p99),
        l.mean_output_tokens.map_or("-".to_string(), |t| format!("{t:.1}")),
    )
}

/// One line per error type seen in any level, with the first message, under the table.
pub fn error_notes(levels: &[LevelReport]) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    for l in levels {
        for (kind, message) in &l.error_examples {
            seen.entry(kind.clone()).or_insert_with(|| message.clone());
        }
    }
    seen.into_iter().map(|(kind, message)| format!("- {kind}: {message}")).collect()
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::Failure;
    use super::super::stats::{summarize, Load};
    use super::*;
    use std::time::Duration;

    #[test]
    fn row_of_a_failed_level_has_dashes_and_error_counts() {
        let outcomes = vec![Err(Failure::Status(503, "busy".into())), Err(Failure::Timeout)];
        let l = summarize(Load::Rate { rate: 2.0, max_concurrency: Some(4) }, &outcomes, Duration::from_secs(1));
        let row = table_row(&l);
        assert!(row.starts_with("| 2 req/s, max 4 | 0 | 2 | 0.00 |"), "{row}");
        assert!(row.ends_with("| 503: 1, timeout: 1 |"), "{row}");
        let header = table_header("http://h", "m", 8, "built-in (32)");
        let columns = |s: &str| s.matches('|').count();
        assert_eq!(columns(header.lines().last().unwrap()), columns(&row));
        assert_eq!(error_notes(&[l]), vec!["- 503: HTTP 503: busy", "- timeout: no complete reply within --timeout"]);
    }
}
