//! The `luodi` binary: command-line parsing and dispatch. Glue only: the work happens in the
//! engine, models, server and train crates.

mod commands;
mod options;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "luodi", version, about = "Put an LLM into production and keep it improving")]
struct Cli {
    /// Where models and state live (default: $HOME/.luodi).
    #[arg(long, global = true, env = "LUODI_HOME")]
    home: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the model over HTTP: OpenAI-compatible API, /generate, /metrics, /health.
    Serve(Box<commands::serve::ServeArgs>),
    /// Generate a completion for one prompt, streamed to stdout.
    Generate(commands::generate::GenerateArgs),
    /// Interactive multi-turn chat (also reads a conversation from a pipe, one turn per line).
    Chat(commands::chat::ChatArgs),
    /// List, fetch and inspect models.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
    /// Scan files for PII and sensitive terms, or write redacted copies.
    #[command(subcommand)]
    Guard(commands::guard::GuardCommand),
    /// Stored interactions and feedback: export as fine-tuning data.
    #[command(subcommand)]
    Feedback(commands::feedback::FeedbackCommand),
    /// API keys with roles (client, reviewer, admin), stored hashed.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// The running server's response cache: stats, clear.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Fine-tune the model on CPU: LoRA or full, continual pre-training or SFT on corrections.
    Train(Box<commands::train::TrainCommand>),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LUODI_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Some(home) = &cli.home {
        // The models crate and everything after it read LUODI_HOME; set once, before any thread starts.
        std::env::set_var("LUODI_HOME", home);
    }
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(*args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Models(cmd) => commands::models::run(cmd),
        Command::Guard(cmd) => commands::guard::run(cmd),
        Command::Cache(cmd) => commands::cache::run(cmd),
        Command::Feedback(cmd) => commands::feedback::run(cmd),
        Command::Keys(cmd) => commands::keys::run(cmd),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Train(args) => commands::train::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
