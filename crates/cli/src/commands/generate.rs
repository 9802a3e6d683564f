//! `luodi generate "prompt"`: one completion, streamed to stdout.

use crate::options::{ModelArgs, SamplingArgs};
use anyhow::Result;
use clap::Args;
use luodi_engine::{ChatMessage, GenerateRequest, Prompt};
use std::io::Write;
use std::ops::ControlFlow;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt (the user's message, or raw text with --raw).
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message (replaces the template's default one).
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object with the text, token ids, counts and timings instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// With --json: report log-probabilities of this many top alternatives per token.
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// A LoRA adapter directory (PEFT layout, e.g. `luodi train`'s output) to apply.
    #[arg(long)]
    pub lora: Option<std::path::PathBuf>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let mut engine = args.model.load()?;
    if let Some(dir) = &args.lora {
        crate::options::apply_lora(&mut engine, dir)?;
    }
    let engine = engine;
    let prompt = if args.raw {
        Prompt::Raw(args.prompt.clone())
    } else if !engine.has_chat_template() {
        // A base model (no template) continues text; that is what the user can expect of it.
        anyhow::ensure!(
            args.system.is_none(),
            "--system needs a chat template, and this model has none (pass --chat-template FILE)"
        );
        eprintln!("note: the model has no chat template; the prompt is used as raw text");
        Prompt::Raw(args.prompt.clone())
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        Prompt::Chat(messages)
    };
    let request = GenerateRequest {
        prompt,
        max_tokens: args.sampling.max_tokens,
        sampling: args.sampling.params(args.logprobs),
        stop: args.sampling.stop.clone(),
    };
    let stdout = std::io::stdout();
    let stream = !args.json;
    let output = engine.generate(&request, |event| {
        if stream {
            let mut out = stdout.lock();
            // A closed pipe (`| head`) ends generation instead of failing it.
            if out.write_all(event.text.as_bytes()).and_then(|_| out.flush()).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if args.json {
        let tok = engine.tokenizer();
        let report = serde_json::json!({
            "model": args.model.model,
            "text": output.text,
            "finish_reason": output.finish_reason,
            "prompt_tokens": output.prompt_tokens,
            "completion_tokens": output.completion_tokens(),
            "tokens": output.tokens,
            "logprobs": (args.logprobs > 0).then(|| output.logprobs.iter().map(|t| serde_json::json!({
                "id": t.id,
                "token": tok.token_text(t.id),
                "logprob": t.logprob,
                "top": t.top.iter().map(|a| serde_json::json!({"id": a.id, "token": tok.token_text(a.id), "logprob": a.logprob})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()),
            "timings": {
                "prefill_ms": output.timings.prefill.as_secs_f64() * 1e3,
                "decode_ms": output.timings.decode.as_secs_f64() * 1e3,
                "time_to_first_token_ms": output.timings.time_to_first_token.as_secs_f64() * 1e3,
                "prefill_tokens_per_s": output.timings.prefill_tokens_per_s(),
                "decode_tokens_per_s": output.decode_tokens_per_s(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
    }
    Ok(())
}
