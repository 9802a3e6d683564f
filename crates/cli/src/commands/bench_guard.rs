//! `luodi bench guard`: the latency the guard chain adds to one chat request, measured on the
//! server's own code path ([`luodi_server::guarding`]): every message checked (PII, lexicons),
//! then the answer pushed token by token through the streaming output filter.

use super::bench_http::prompts;
use anyhow::{anyhow, Result};
use clap::Args;
use luodi_server::backend::ChatMessage;
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct GuardBenchArgs {
    /// Config file whose `[guard]` table is used; default ./luodi.toml when it exists, else the
    /// built-in rules.
    #[arg(long, env = "LUODI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Requests to time (each prompt of the built-in customer-service set in turn).
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Answer length in tokens (about 3 characters each), pushed through the output filter.
    #[arg(long, default_value_t = 64)]
    pub answer_tokens: usize,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// A system prompt of a realistic size, and a user turn with PII in every other request, so both
/// the clean path and the rewriting path are timed.
const SYSTEM: &str = "You are the customer-service assistant of a retail bank. Answer briefly and politely, \
    in the customer's language. Never ask for full card numbers or passwords. 请使用礼貌、简洁的语言回答。";
const PII_TURN: &str =
    "我的手机号是 138 0013 8000，身份证 11010519491231002X，卡号 6222 0212 3456 7890 128，请帮我查一下。";
const ANSWER: &str = "您好，感谢您的耐心等待。Your request has been received and a specialist will call you back \
    within one business day. 如需进一步帮助，请随时联系我们的客服热线，我们将竭诚为您服务。Thank you for banking with us.";

pub fn run(args: GuardBenchArgs) -> Result<()> {
    let file = args.config.clone().or_else(|| Some(PathBuf::from("luodi.toml")).filter(|p| p.is_file()));
    let config = match &file {
        Some(path) => ServerConfig::from_file(path).map_err(anyhow::Error::msg)?,
        None => ServerConfig::default(),
    };
    let guarding = Guarding::from_config(&config).map_err(anyhow::Error::msg)?;
    let questions = prompts::built_in();
    let answer: Vec<char> = ANSWER.chars().cycle().take(args.answer_tokens * 3).collect();
    let tokens: Vec<String> = answer.chunks(3).map(|c| c.iter().collect()).collect();
    let mut micros = Vec::with_capacity(args.requests);
    let mut blocked = 0usize;
    for i in 0..args.requests.max(1) {
        let question = questions[i % questions.len()][0]["content"].as_str().unwrap_or_default();
        let mut messages = vec![ChatMessage::new("system", SYSTEM), ChatMessage::new("user", question)];
        if i % 2 == 1 {
            messages.push(ChatMessage::new("user", PII_TURN));
        }
        let started = Instant::now();
        let mut guard = guarding.request("bench");
        if guard.check_messages(&mut messages).is_err() {
            blocked += 1;
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            continue;
        }
        let mut filter = guard.output();
        let mut stopped = false;
        for token in &tokens {
            if filter.push(token, None).is_err() {
                stopped = true;
                break;
            }
        }
        if !stopped {
            let _ = filter.finish();
        }
        drop(filter);
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    let (p50, p99) = (at(0.50), at(0.99));
    if args.json {
        let v = serde_json::json!({
            "requests": micros.len(), "answer_tokens": args.answer_tokens, "blocked_requests": blocked,
            "mean_us": mean, "p50_us": p50, "p99_us": p99, "max_us": at(1.0),
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| anyhow!(e))?);
    } else {
        println!(
            "guard per request ({} requests, {} answer tokens, {blocked} blocked): mean {mean:.1} us, p50 {p50:.1} us, p99 {p99:.1} us",
            micros.len(),
            args.answer_tokens
        );
    }
    Ok(())
}
