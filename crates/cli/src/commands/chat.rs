//! `luodi chat`: a multi-turn conversation. Typed into, it shows a prompt and streams each
//! answer; fed by a pipe, it reads one user turn per line and prints one answer per turn.
//! The conversation's KV cache is kept between turns, so each turn computes only its new tokens.

use crate::options::{ModelArgs, SamplingArgs};
use anyhow::Result;
use clap::Args;
use luodi_engine::{ChatMessage, GenerateRequest, Prompt};
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message for the whole conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// A LoRA adapter directory (PEFT layout, e.g. `luodi train`'s output) to apply.
    #[arg(long)]
    pub lora: Option<std::path::PathBuf>,
}

const HELP: &str = "commands: /reset (new conversation), /history, /exit (or Ctrl-D)";

pub fn run(args: ChatArgs) -> Result<()> {
    let mut engine = args.model.load()?;
    if let Some(dir) = &args.lora {
        crate::options::apply_lora(&mut engine, dir)?;
    }
    let engine = engine;
    anyhow::ensure!(
        engine.has_chat_template(),
        "model `{}` has no chat template (a base model); use `luodi generate --raw` or pass --chat-template FILE",
        args.model.model
    );
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("luodi chat with {} ({HELP})", args.model.model);
    }
    let fresh = || -> Vec<ChatMessage> { args.system.iter().map(|s| ChatMessage::new("system", s)).collect() };
    let mut history = fresh();
    let mut session = engine.new_session(1024)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = fresh();
                eprintln!("(new conversation)");
                continue;
            }
            "/history" => {
                for m in &history {
                    eprintln!("[{}] {}", m.role, m.content);
                }
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", input));
        let request = GenerateRequest {
            prompt: Prompt::Chat(history.clone()),
            max_tokens: args.sampling.max_tokens,
            sampling: args.sampling.params(0),
            stop: args.sampling.stop.clone(),
        };
        let output = engine.generate_in(&mut session, &request, |event| {
            let mut out = stdout.lock();
            if out.write_all(event.text.as_bytes()).and_then(|_| out.flush()).is_err() {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        match output {
            Ok(output) => {
                println!();
                history.push(ChatMessage::new("assistant", output.text));
            }
            Err(e) => {
                // A failed turn (e.g. the conversation outgrew the context) is reported and
                // dropped; the conversation goes on.
                history.pop();
                eprintln!("error: {e}");
                if !interactive {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}
