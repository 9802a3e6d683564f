//! `luodi cache stats|clear`: the running server's response cache, through its admin endpoints
//! (the in-process cache lives in the server; a Redis cache is shared by all replicas, so any
//! one of them can purge it).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Store, mode, entries and bounds of the server's response cache.
    Stats(ServerArgs),
    /// Remove cached answers: one model version's (--model-version) or all.
    Clear(ClearArgs),
}

#[derive(Args)]
pub struct ServerArgs {
    /// The luodi server.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "LUODI_URL")]
    url: String,
    /// API key, when the server requires one.
    #[arg(long, env = "LUODI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ClearArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this model version's entries (as `cache stats` shows it: `name@sha256`).
    #[arg(long)]
    model_version: Option<String>,
}

pub fn run(cmd: CacheCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match cmd {
            CacheCommand::Stats(s) => {
                let v = call(&s, reqwest::Method::GET, "/admin/cache/stats", None).await?;
                if s.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else if v["enabled"] == json!(false) {
                    println!("the response cache is off on {}", s.url);
                } else {
                    println!(
                        "store: {}  mode: {}  ttl: {} s",
                        v["store"].as_str().unwrap_or("?"),
                        v["mode"].as_str().unwrap_or("?"),
                        v["ttl_secs"]
                    );
                    println!("entries: {}", v["entries"]);
                    if let (Some(b), Some(m)) = (v["bytes"].as_u64(), v["max_bytes"].as_u64()) {
                        println!("bytes: {b} of {m}");
                    }
                    if let Some(q) = v["semantic_questions"].as_u64() {
                        println!("semantic questions: {q}");
                    }
                    println!("model version: {}", v["model_version"].as_str().unwrap_or("?"));
                }
            }
            CacheCommand::Clear(c) => {
                let body = json!({"model_version": c.model_version});
                let v = call(&c.server, reqwest::Method::POST, "/admin/cache/purge", Some(body)).await?;
                if c.server.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("removed {} entries", v["removed"]);
                }
            }
        }
        Ok(())
    })
}

async fn call(s: &ServerArgs, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("{}{path}", s.url.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let mut req = client.request(method, &url);
    if let Some(key) = &s.api_key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url} (is `luodi serve` running there?)"))?;
    let status = resp.status();
    let v: Value = resp.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", v["error"]["message"].as_str().unwrap_or("(no message)"));
    }
    Ok(v)
}
