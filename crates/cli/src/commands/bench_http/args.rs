//! Flags of `luodi bench http` and their checks. Every value is checked here, by clap, so a
//! bad flag fails before any request is sent, with a message naming the flag.

use clap::{ArgGroup, Args};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("mode").required(true).args(["concurrency", "request_rate"])))]
pub struct HttpBenchArgs {
    /// Base URL of the server; requests go to {url}/v1/chat/completions (a trailing /v1 is accepted).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Model name to request (default: the first id listed by GET {url}/v1/models).
    #[arg(long)]
    pub model: Option<String>,

    /// API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "LUODI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Closed loop: concurrency levels, comma-separated, each run separately in order. N workers
    /// each send their next request as soon as the previous one finishes.
    #[arg(long, short = 'c', value_delimiter = ',', value_parser = positive_usize, value_name = "N")]
    pub concurrency: Vec<usize>,

    /// Open loop: request rates in requests/s, comma-separated, each run separately in order.
    /// Arrivals are Poisson (exponential gaps from a seeded generator).
    #[arg(long, value_delimiter = ',', value_parser = positive_rate, value_name = "R")]
    pub request_rate: Vec<f64>,

    /// Open loop only: at most this many requests in flight; later arrivals wait for a slot.
    #[arg(long, conflicts_with = "concurrency", value_parser = positive_usize, value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Seed of the arrival schedule of --request-rate.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Requests per level; sending stops at this count or at --duration, whichever comes first.
    #[arg(long, short = 'n', default_value_t = 32, value_parser = positive_usize)]
    pub requests: usize,

    /// Seconds per level at most; requests in flight when it ends still finish.
    #[arg(long, default_value_t = 120.0, value_parser = positive_seconds, value_name = "SECS")]
    pub duration: f64,

    /// Seconds one request may take, from sending to the end of its stream.
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds, value_name = "SECS")]
    pub timeout: f64,

    /// Requests sent one by one before the first level and not counted (loads caches, opens connections).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,

    /// Prompts file: one user message per line, or JSONL with {"messages": [...]} or {"prompt": "..."}
    /// per line (detected by a first non-space character `{`). Default: built-in customer-service
    /// questions in English and Chinese.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,

    /// System prompt put before every conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// max_tokens of every request.
    #[arg(long, default_value_t = 64, value_parser = positive_u32)]
    pub max_tokens: u32,

    /// temperature of every request.
    #[arg(long, default_value_t = 0.0, value_parser = temperature)]
    pub temperature: f64,

    /// A JSON object merged into every request body, top-level keys replacing luodi's
    /// (e.g. '{"cache_prompt": false}' for llama-server, '{"ignore_eos": true}' for vLLM).
    #[arg(long, value_parser = json_object, value_name = "JSON")]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,

    /// Print the report as JSON on stdout instead of a markdown table.
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

fn positive_u32(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err("expected requests per second, a number greater than 0 (e.g. 2.5)".into()),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    // Upper bound: Duration::from_secs_f64 panics on values it cannot represent.
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= 1e9 => Ok(t),
        _ => Err("expected a number of seconds greater than 0 (e.g. 30 or 0.5)".into()),
    }
}

fn temperature(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err("expected a number of at least 0".into()),
    }
}

fn json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object, e.g. '{\"cache_prompt\": false}'".into()),
        Err(e) => Err(format!("expected a JSON object: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_checks() {
        assert_eq!(positive_usize("4"), Ok(4));
        assert!(positive_usize("0").is_err());
        assert!(positive_usize("-1").is_err());
        assert!(positive_rate("0").is_err());
        assert!(positive_rate("nan").is_err());
        assert_eq!(positive_rate("2.5"), Ok(2.5));
        assert!(positive_seconds("inf").is_err());
        assert!(temperature("-0.1").is_err());
        assert!(json_object("[1]").is_err());
        assert!(json_object("{bad").is_err());
        assert_eq!(json_object(r#"{"ignore_eos": true}"#).map(|m| m.len()), Ok(1));
    }
}
