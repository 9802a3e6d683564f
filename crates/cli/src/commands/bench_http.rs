//! `luodi bench http`: load benchmark of any OpenAI-compatible server (luodi, vLLM,
//! llama-server, ...) through streamed chat completions, in the manner of vLLM's
//! benchmark_serving.py: concurrency levels (closed loop) or request rates (open loop), with
//! TTFT, inter-token latency, end-to-end latency and throughput per level.

mod args;
mod client;
pub(crate) mod prompts;
mod report;
mod runner;
mod schedule;
mod sse;
mod stats;

pub use args::HttpBenchArgs;

use anyhow::{bail, Context, Result};
use client::{RequestTemplate, Target};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runner::{Bench, LevelRun, Limits};
use serde_json::{json, Value};
use stats::Load;
use std::sync::Arc;
use std::time::Duration;

pub fn run(args: HttpBenchArgs) -> Result<()> {
    let base = base_url(&args.url)?;
    let prompts = match &args.prompts {
        Some(path) => prompts::load(path)?,
        None => prompts::built_in(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(args, base, prompts))
}

/// The server's base URL, normalised to end in `/` (with any trailing `/v1` removed, since
/// OpenAI clients are often configured with it), so API paths join onto it.
fn base_url(text: &str) -> Result<reqwest::Url> {
    const EXAMPLE: &str = "expected a base URL such as http://127.0.0.1:8080";
    let mut url = reqwest::Url::parse(text.trim()).map_err(|e| anyhow::anyhow!("--url `{text}`: {e}; {EXAMPLE}"))?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "--url `{text}`: https is not supported: this build of luodi has no TLS client; \
             use an http:// URL (the server's plain port, or a local TLS-terminating proxy)"
        ),
        other => bail!("--url `{text}`: scheme `{other}` is not http; {EXAMPLE}"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("--url `{text}`: no host; {EXAMPLE}");
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path).to_string();
    url.set_path(&format!("{path}/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

async fn bench(args: HttpBenchArgs, base: reqwest::Url, prompts: Vec<prompts::Prompt>) -> Result<()> {
    // No proxy: traffic goes only to the URL given, whatever HTTP_PROXY says.
    // A fresh connection per request: servers that cap keep-alive (llama-server's
    // cpp-httplib closes after a few requests) otherwise race the pool and fail requests
    // with "connection closed before message completed". On loopback a connect costs
    // tens of microseconds, the same for every server measured.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
        .context("building the HTTP client")?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let model = match &args.model {
        Some(m) => m.clone(),
        None => discover_model(&client, &base, args.api_key.as_deref(), timeout).await?,
    };
    let url_text = base.as_str().trim_end_matches('/').to_string();
    let prompts_label = match &args.prompts {
        Some(p) => format!("{} ({})", p.display(), prompts.len()),
        None => format!("built-in ({})", prompts.len()),
    };
    let settings = settings_json(&args, &prompts_label);
    let target = Target { client, chat_url: base.join("v1/chat/completions")?, api_key: args.api_key.clone(), timeout };
    let template = RequestTemplate {
        model: model.clone(),
        system: args.system.clone(),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        extra_body: args.extra_body.clone().unwrap_or_default(),
    };
    let bench = Arc::new(Bench { target, template, prompts });

    if args.warmup > 0 {
        eprintln!("warm-up: {} request(s) to {url_text} (model {model})", args.warmup);
        let outcomes = runner::warmup(&bench, args.warmup).await;
        if let Some(e) = outcomes.iter().find_map(|o| o.as_ref().err()) {
            // Not fatal: the levels count every error, and a flaky first request is worth seeing there.
            eprintln!("warning: warm-up request failed ({}): {}", e.kind(), e.message());
        }
    }

    let loads: Vec<Load> = if args.concurrency.is_empty() {
        args.request_rate.iter().map(|&rate| Load::Rate { rate, max_concurrency: args.max_concurrency }).collect()
    } else {
        args.concurrency.iter().map(|&n| Load::Concurrency(n)).collect()
    };
    let limits = Limits { requests: args.requests, duration: Duration::from_secs_f64(args.duration) };
    if !args.json {
        println!("{}", report::table_header(&url_text, &model, args.max_tokens, &prompts_label));
    }
    let mut levels = Vec::with_capacity(loads.len());
    for load in loads {
        let progress = progress_bar(args.requests, &load);
        let LevelRun { outcomes, wall } = match load {
            Load::Concurrency(n) => runner::closed_loop(&bench, n, limits, &progress).await?,
            Load::Rate { rate, max_concurrency } => {
                runner::open_loop(&bench, rate, max_concurrency, args.seed, limits, &progress).await?
            }
        };
        progress.finish_and_clear();
        let level = stats::summarize(load, &outcomes, wall);
        if !args.json {
            println!("{}", report::table_row(&level));
        }
        levels.push(level);
    }
    if !args.json {
        let notes = report::error_notes(&levels);
        if !notes.is_empty() {
            println!("\nerrors (first message of each type):");
            notes.iter().for_each(|n| println!("{n}"));
        }
    }

    let report = report::Report { url: url_text, model, max_tokens: args.max_tokens, settings, levels };
    let json = serde_json::to_string_pretty(&report)?;
    if args.json {
        println!("{json}");
    }
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("--output: writing {}", path.display()))?;
    }
    Ok(())
}

/// The model to request when --model is not given: the first one the server lists.
async fn discover_model(
    client: &reqwest::Client,
    base: &reqwest::Url,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<String> {
    let url = base.join("v1/models")?;
    let mut request = client.get(url.clone()).timeout(timeout);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let hint = "pass --model NAME";
    let response = request
        .send()
        .await
        .with_context(|| format!("listing models at {url} to pick one ({hint}); is the server up?"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("listing models at {url}: HTTP {status} ({hint})");
    }
    let body: Value =
        response.json().await.with_context(|| format!("listing models at {url}: reply is not JSON ({hint})"))?;
    match body["data"][0]["id"].as_str() {
        Some(id) => Ok(id.to_string()),
        None => bail!("{url} lists no model ({hint})"),
    }
}

fn settings_json(args: &HttpBenchArgs, prompts: &str) -> Value {
    json!({
        "mode": if args.concurrency.is_empty() { "open-loop" } else { "closed-loop" },
        "concurrency": args.concurrency,
        "request_rate": args.request_rate,
        "max_concurrency": args.max_concurrency,
        "seed": args.seed,
        "requests_per_level": args.requests,
        "duration_s": args.duration,
        "timeout_s": args.timeout,
        "warmup": args.warmup,
        "temperature": args.temperature,
        "prompts": prompts,
        "system": args.system,
        "extra_body": args.extra_body,
        "percentiles": "linear interpolation between closest ranks (numpy default)",
    })
}

/// A bar per level on stderr; indicatif draws nothing when stderr is not a terminal, so
/// stdout (the table or JSON) stays clean either way.
fn progress_bar(requests: usize, load: &Load) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(requests as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} requests, {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(load.label());
    bar
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn base_url_is_normalised_and_checked() {
        assert_eq!(base_url("http://127.0.0.1:8080").unwrap().as_str(), "http://127.0.0.1:8080/");
        assert_eq!(base_url("http://h:1/v1/").unwrap().as_str(), "http://h:1/");
        assert_eq!(base_url("http://h/proxy/v1").unwrap().as_str(), "http://h/proxy/");
        let err = |u| format!("{:#}", base_url(u).unwrap_err());
        assert!(err("https://api.example.com").contains("no TLS"));
        assert!(err("localhost:8080").contains("--url"));
        assert!(err("not a url").contains("--url"));
        assert!(err("ftp://h").contains("not http"));
    }
}
