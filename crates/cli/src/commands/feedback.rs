//! `luodi feedback export`: stored interactions and their feedback as training data, streamed
//! page by page from the store (constant memory).
//!
//! Formats (one JSON object per line):
//! - `sft`: `{"messages": [...the prompt..., {"role": "assistant", "content": TARGET}],
//!   "request_id", "model_version", "source"}` where TARGET is the newest current correction,
//!   or, with `--min-rating`, the model's own answer when its ratings reach it (`source` says
//!   which: `correction` or `answer`).
//! - `dpo`: `{"prompt": [...the prompt...], "chosen": CORRECTION, "rejected": ANSWER,
//!   "request_id", "model_version"}` for every interaction with a correction that differs.
//! - `jsonl`: the interaction as stored, with `"feedback": [...]` (superseded entries too).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use luodi_store::{Feedback, Filter, Interaction, Store};
use serde_json::{json, Value};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Write interactions with feedback as SFT, DPO or raw JSONL records.
    Export(ExportArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Sft,
    Dpo,
    Jsonl,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: Format,
    /// Output file ("-" for stdout).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Only interactions since: YYYY-MM-DD (UTC), unix milliseconds, or a relative age (7d, 12h).
    #[arg(long)]
    since: Option<String>,
    /// Only interactions whose current rating reaches this (-1..5); for `sft` it also admits
    /// uncorrected answers rated at least this.
    #[arg(long, allow_hyphen_values = true)]
    min_rating: Option<i64>,
    /// Only this model version.
    #[arg(long)]
    model_version: Option<String>,
    /// The store [default: [store] url of luodi.toml, else sqlite://$LUODI_HOME/luodi.db].
    #[arg(long, env = "LUODI_STORE_URL", hide_env_values = true)]
    store_url: Option<String>,
    /// Table prefix of the store.
    #[arg(long, default_value = "luodi_")]
    table_prefix: String,
}

pub fn run(cmd: FeedbackCommand) -> Result<()> {
    match cmd {
        FeedbackCommand::Export(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(export(args))
        }
    }
}

/// Parses `--since`.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    if let Some(n) = s.strip_suffix('d').and_then(|n| n.parse::<i64>().ok()) {
        return Ok(now_ms - n * 86_400_000);
    }
    if let Some(n) = s.strip_suffix('h').and_then(|n| n.parse::<i64>().ok()) {
        return Ok(now_ms - n * 3_600_000);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let parts: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = parts[..] {
        if let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) {
            if (1..=12).contains(&m) && (1..=31).contains(&d) {
                return Ok(days_from_civil(y, m, d) * 86_400_000);
            }
        }
    }
    bail!("--since: expected YYYY-MM-DD, unix milliseconds or an age like 7d or 12h, got `{s}`")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The record(s) one interaction becomes in `format`, if any.
pub fn records(format: Format, i: &Interaction, feedback: &[Feedback], min_rating: Option<i64>) -> Option<Value> {
    let current: Vec<&Feedback> = feedback.iter().filter(|f| f.superseded_ms.is_none()).collect();
    let correction = current
        .iter()
        .filter_map(|f| f.correction.as_deref().filter(|c| !c.trim().is_empty()).map(|c| (f.created_ms, c)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, c)| c);
    let prompt = i.messages.clone();
    match format {
        Format::Jsonl => {
            let mut v = serde_json::to_value(i).ok()?;
            v["feedback"] = serde_json::to_value(feedback).ok()?;
            Some(v)
        }
        Format::Dpo => {
            let chosen = correction.filter(|c| c.trim() != i.answer.trim())?;
            Some(
                json!({"prompt": prompt, "chosen": chosen, "rejected": i.answer, "request_id": i.id, "model_version": i.model_version}),
            )
        }
        Format::Sft => {
            let rated_ok = |m: i64| {
                let ratings: Vec<i64> = current.iter().filter_map(|f| f.rating).collect();
                !ratings.is_empty() && ratings.iter().all(|r| *r >= m)
            };
            let (target, source) = match (correction, min_rating) {
                (Some(c), _) => (c.to_string(), "correction"),
                (None, Some(m)) if rated_ok(m) => (i.answer.clone(), "answer"),
                _ => return None,
            };
            let mut messages = prompt.as_array().cloned().unwrap_or_default();
            messages.push(json!({"role": "assistant", "content": target}));
            Some(json!({"messages": messages, "request_id": i.id, "model_version": i.model_version, "source": source}))
        }
    }
}

/// The store to use: `--store-url`, else `[store] url` of ./luodi.toml, else the default
/// SQLite file; a SQLite file must exist (it is the server that creates it).
pub fn store_url(flag: Option<&str>) -> Result<String> {
    let url = match flag {
        Some(u) => u.to_string(),
        None => {
            let from_file = std::path::Path::new("luodi.toml")
                .is_file()
                .then(|| luodi_server::config::ServerConfig::from_file(std::path::Path::new("luodi.toml")))
                .transpose()
                .map_err(anyhow::Error::msg)?
                .and_then(|c| c.store.url);
            from_file.unwrap_or_else(|| {
                format!("sqlite://{}", luodi_models::ModelStore::from_env().home().join("luodi.db").display())
            })
        }
    };
    if url.starts_with("sqlite://") {
        let path = url.trim_start_matches("sqlite://").split('?').next().unwrap_or_default();
        if !std::path::Path::new(path).is_file() {
            bail!("no store at {path} (run `luodi serve` first, or pass --store-url)");
        }
    }
    Ok(url)
}

async fn export(args: ExportArgs) -> Result<()> {
    let url = store_url(args.store_url.as_deref())?;
    let store = Store::open(&url, &args.table_prefix).await.context("opening the interaction store")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let filter = Filter {
        since_ms: args.since.as_deref().map(|s| parse_since(s, now)).transpose()?,
        min_rating: args.min_rating,
        reviewed: Some(true),
        model_version: args.model_version.clone(),
        ..Default::default()
    };
    let sink: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?)
    };
    let mut out = BufWriter::new(sink);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} interactions read, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let (mut read, mut written) = (0u64, 0u64);
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(&filter, cursor.as_deref(), 500).await?;
        for item in &page.items {
            let feedback = store.feedback_for(&item.id).await?;
            read += 1;
            if let Some(record) = records(args.format, item, &feedback, args.min_rating) {
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
        bar.set_position(read);
        bar.set_message(format!("{written} records written"));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("{written} {:?} records from {read} reviewed interactions -> {}", args.format, args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(parse_since("2026-11-30", 0).unwrap(), 1_795_996_800_000);
        assert_eq!(parse_since("2024-02-29", 0).unwrap(), 1_709_164_800_000);
        assert_eq!(parse_since("7d", 10 * 86_400_000).unwrap(), 3 * 86_400_000);
        assert_eq!(parse_since("12h", 86_400_000).unwrap(), 43_200_000);
        assert_eq!(parse_since("1234", 0).unwrap(), 1234);
        assert!(parse_since("last week", 0).unwrap_err().to_string().contains("--since"));
        assert!(parse_since("2026-13-01", 0).is_err());
    }
}
