//! `luodi bench engine`: prompt-processing and decode speed, measured the way llama-bench
//! measures them (pp: one forward pass over N prompt tokens in a fresh context; tg: N tokens
//! decoded one at a time), so the figures compare directly with llama.cpp's.

use crate::options::ModelArgs;
use anyhow::Result;
use clap::{Args, Subcommand};
use luodi_engine::sampler::argmax;
use luodi_engine::Engine;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Engine throughput: prompt processing and single-stream decode, tokens/s.
    Engine(EngineBenchArgs),
    /// Load benchmark of an OpenAI-compatible server: concurrency levels or a request rate.
    Http(super::bench_http::HttpBenchArgs),
    /// Latency the guard chain (PII, lexicons, output moderation) adds to one request.
    Guard(super::bench_guard::GuardBenchArgs),
}

#[derive(Args, Debug)]
pub struct EngineBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths to measure (comma-separated), like llama-bench -p.
    #[arg(long, short = 'p', value_delimiter = ',', default_value = "64,512")]
    pub prompt_tokens: Vec<usize>,
    /// Tokens to decode, like llama-bench -n.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub gen_tokens: usize,
    /// Batch sizes for batched decode (comma-separated): B sequences decode -n tokens in
    /// lockstep, one forward pass per step; reported as aggregate tokens/s (`tg128@b8`).
    #[arg(long, short = 'b', value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Repetitions of each test, like llama-bench -r.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub repetitions: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct BenchRow {
    test: String,
    tokens: usize,
    tokens_per_s_mean: f64,
    tokens_per_s_std: f64,
    runs: Vec<f64>,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Engine(args) => engine(args),
        BenchCommand::Http(args) => super::bench_http::run(args),
        BenchCommand::Guard(args) => super::bench_guard::run(args),
    }
}

fn engine(args: EngineBenchArgs) -> Result<()> {
    let threads =
        args.model.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let engine = args.model.load()?;
    let reps = args.repetitions.max(1);
    let mut rows = Vec::new();
    // Warm-up: the first pass pays one-off costs (weight repacking, page faults, thread start).
    run_prompt(&engine, 16)?;
    for &n in &args.prompt_tokens {
        let runs = (0..reps).map(|_| run_prompt(&engine, n)).collect::<Result<Vec<_>>>()?;
        rows.push(row(format!("pp{n}"), n, runs));
    }
    if args.gen_tokens > 0 {
        for &b in &args.batch {
            anyhow::ensure!(b >= 1, "--batch sizes must be at least 1, got {b}");
            let runs = (0..reps).map(|_| run_decode(&engine, args.gen_tokens, b)).collect::<Result<Vec<_>>>()?;
            let name = if b == 1 { format!("tg{}", args.gen_tokens) } else { format!("tg{}@b{b}", args.gen_tokens) };
            rows.push(row(name, args.gen_tokens * b, runs));
        }
    }
    let peak_rss_mib = peak_rss_kib().map(|k| k as f64 / 1024.0);
    if args.json {
        let report = serde_json::json!({
            "model": args.model.model,
            "threads": threads,
            "results": rows,
            "peak_rss_mib": peak_rss_mib,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("model: {}  threads: {threads}", args.model.model);
        println!("| test | tokens/s (mean ± std) | runs |");
        println!("|---|---|---|");
        for r in &rows {
            let runs: Vec<String> = r.runs.iter().map(|x| format!("{x:.1}")).collect();
            println!("| {} | {:.1} ± {:.1} | {} |", r.test, r.tokens_per_s_mean, r.tokens_per_s_std, runs.join(", "));
        }
        if let Some(rss) = peak_rss_mib {
            println!("peak RSS: {rss:.0} MiB");
        }
    }
    Ok(())
}

fn row(test: String, tokens: usize, runs: Vec<f64>) -> BenchRow {
    let mean = runs.iter().sum::<f64>() / runs.len() as f64;
    let var = runs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / runs.len() as f64;
    BenchRow { test, tokens, tokens_per_s_mean: mean, tokens_per_s_std: var.sqrt(), runs }
}

/// A realistic prompt of exactly `n` tokens: customer-service text, repeated as needed.
fn prompt_of(engine: &Engine, n: usize) -> Result<Vec<u32>> {
    const TEXT: &str = "Dear customer, thank you for contacting our support team. Your order 4521 was shipped on Monday and should arrive within three business days. 如果您有任何问题，请随时联系我们的客服中心。";
    let piece = engine.tokenizer().encode(TEXT, false, false)?;
    Ok(piece.iter().copied().cycle().take(n).collect())
}

fn run_prompt(engine: &Engine, n: usize) -> Result<f64> {
    let tokens = prompt_of(engine, n)?;
    let mut session = engine.new_session(n)?;
    let start = Instant::now();
    engine.forward_tokens(&mut session, &tokens)?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Aggregate decode tokens/s of `batch` sequences stepping together (each from its own
/// short prompt, so they sit at different positions like real traffic).
fn run_decode(engine: &Engine, n: usize, batch: usize) -> Result<f64> {
    let first = engine.tokenizer().bos_token_id().unwrap_or(0);
    let mut sessions = (0..batch).map(|_| engine.new_session(n + 16)).collect::<luodi_engine::Result<Vec<_>>>()?;
    let prompts: Vec<Vec<u32>> = (0..batch).map(|i| prompt_of(engine, 1 + i % 8)).collect::<Result<_>>()?;
    let prompts: Vec<Vec<u32>> = prompts.into_iter().map(|p| std::iter::once(first).chain(p).collect()).collect();
    let mut logits = engine.forward_batch(&mut sessions, &prompts)?;
    let start = Instant::now();
    for _ in 0..n {
        let next: Vec<Vec<u32>> = logits.iter().map(|l| vec![argmax(l)]).collect();
        logits = engine.forward_batch(&mut sessions, &next)?;
    }
    Ok((n * batch) as f64 / start.elapsed().as_secs_f64())
}

/// Peak resident memory of this process (VmHWM), Linux only.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
