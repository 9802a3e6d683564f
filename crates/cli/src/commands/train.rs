//! `luodi train`: fine-tune the served model on CPU. Flags are the Hugging Face `train.py`
//! ones, accepted in snake_case (as people type them from scripts) and kebab-case.

use crate::options::set_threads;
use anyhow::{Context, Result};
use clap::Args;
use luodi_train::config::{parse_targets, Method, TrainConfig};
use luodi_train::merge::OutType;
use luodi_train::schedule::Kind;
use std::path::PathBuf;

/// `luodi train [FLAGS]` trains; `luodi train merge ...` folds an adapter into its base.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrainCommand {
    #[command(subcommand)]
    sub: Option<TrainSub>,
    #[command(flatten)]
    args: TrainArgs,
}

#[derive(clap::Subcommand, Debug)]
enum TrainSub {
    /// Merge a LoRA adapter into its base model and write a GGUF that `luodi serve` loads.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// The base model the adapter was trained on: catalog name or GGUF path.
    #[arg(long)]
    base: String,
    /// The adapter directory (PEFT layout).
    #[arg(long)]
    adapter: PathBuf,
    /// The merged GGUF to write.
    #[arg(long)]
    out: PathBuf,
    /// Storage of the merged projections: f16, q8_0 or q4_1 (other tensors are copied as they are).
    #[arg(long = "type", default_value = "f16", value_parser = |s: &str| s.parse::<OutType>())]
    out_type: OutType,
    /// Score the adapter and the merged model on this file (the trainer's formats) and print both.
    #[arg(long = "eval_file", visible_alias = "eval-file")]
    eval_file: Option<PathBuf>,
    #[arg(long = "max_seq_length", visible_alias = "max-seq-length", default_value_t = 512)]
    max_seq_length: usize,
    #[arg(long, short = 't')]
    threads: Option<usize>,
}

fn merge(args: MergeArgs) -> Result<()> {
    set_threads(args.threads);
    let base = luodi_models::ModelStore::from_env().resolve(&args.base, true)?;
    let report = luodi_train::merge::merge(&base.path, &args.adapter, &args.out, args.out_type)
        .with_context(|| format!("merging {} into {}", args.adapter.display(), base.path.display()))?;
    println!(
        "merged {} projections ({} tensors copied as they were) into {}",
        report.merged_tensors,
        report.copied_tensors,
        report.out.display()
    );
    if let Some(eval) = &args.eval_file {
        let (adapter, merged) =
            luodi_train::merge::compare(&base.path, &args.adapter, &args.out, eval, args.max_seq_length)?;
        println!(
            "perplexity on {}: adapter {:.4}, merged {:.4} ({:+.2}%)",
            eval.display(),
            adapter.exp(),
            merged.exp(),
            100.0 * (merged.exp() / adapter.exp() - 1.0)
        );
        if merged.exp() > 1.05 * adapter.exp() {
            eprintln!(
                "warning: storing the merged projections as {:?} lost quality; --type f16 or q8_0 keeps the adapter's effect",
                args.out_type
            );
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model: catalog name, GGUF path, or hf:owner/repo/file.gguf.
    #[arg(long = "model_name_or_path", visible_alias = "model-name-or-path", short = 'm', default_value = luodi_models::DEFAULT_MODEL)]
    model: String,
    /// Training data, JSON (an array) or JSONL: `{"text"}`, `{"messages"}` or Alpaca records.
    #[arg(long = "train_file", visible_alias = "train-file", required = true)]
    train_file: Option<PathBuf>,
    /// Held-out data in the same format, for validation loss and perplexity.
    #[arg(long = "validation_file", visible_alias = "validation-file")]
    validation_file: Option<PathBuf>,
    /// Fraction of the training records held out for validation instead (0: none).
    #[arg(long = "validation_split", visible_alias = "validation-split", default_value_t = 0.0)]
    validation_split: f32,
    /// Where the adapter (or weights), logs and checkpoints go.
    #[arg(long = "output_dir", visible_alias = "output-dir", required = true)]
    output_dir: Option<PathBuf>,
    #[arg(long = "per_device_train_batch_size", visible_alias = "per-device-train-batch-size", default_value_t = 8)]
    per_device_train_batch_size: usize,
    #[arg(long = "gradient_accumulation_steps", visible_alias = "gradient-accumulation-steps", default_value_t = 1)]
    gradient_accumulation_steps: usize,
    #[arg(long = "num_train_epochs", visible_alias = "num-train-epochs", default_value_t = 3.0)]
    num_train_epochs: f32,
    /// Optimizer steps to run; overrides --num_train_epochs.
    #[arg(long = "max_steps", visible_alias = "max-steps")]
    max_steps: Option<usize>,
    /// Peak learning rate (default: 2e-4 for LoRA, 2e-5 for full fine-tuning).
    #[arg(long = "learning_rate", visible_alias = "learning-rate")]
    learning_rate: Option<f32>,
    /// linear, cosine or constant.
    #[arg(long = "lr_scheduler_type", visible_alias = "lr-scheduler-type", default_value = "linear", value_parser = |s: &str| s.parse::<Kind>())]
    lr_scheduler_type: Kind,
    #[arg(long = "warmup_steps", visible_alias = "warmup-steps")]
    warmup_steps: Option<usize>,
    #[arg(long = "warmup_ratio", visible_alias = "warmup-ratio", default_value_t = 0.0)]
    warmup_ratio: f32,
    /// Longest sequence in tokens: text is packed into blocks of it, conversations are cut at it.
    #[arg(long = "max_seq_length", visible_alias = "max-seq-length", default_value_t = 512)]
    max_seq_length: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// lora or full.
    #[arg(long, default_value = "lora", value_parser = parse_method)]
    method: Method,
    #[arg(long = "lora_r", visible_alias = "lora-r", default_value_t = 8)]
    lora_r: usize,
    #[arg(long = "lora_alpha", visible_alias = "lora-alpha", default_value_t = 16.0)]
    lora_alpha: f32,
    #[arg(long = "lora_dropout", visible_alias = "lora-dropout", default_value_t = 0.05)]
    lora_dropout: f32,
    /// PEFT module names (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear.
    #[arg(long = "target_modules", visible_alias = "target-modules", default_value = "q_proj,v_proj")]
    target_modules: String,
    /// Write a resumable checkpoint every this many steps.
    #[arg(long = "save_steps", visible_alias = "save-steps")]
    save_steps: Option<usize>,
    /// Validation loss and perplexity every this many steps (and at the end).
    #[arg(long = "eval_steps", visible_alias = "eval-steps")]
    eval_steps: Option<usize>,
    #[arg(long = "logging_steps", visible_alias = "logging-steps", default_value_t = 10)]
    logging_steps: usize,
    /// A checkpoint directory (output_dir/checkpoint-N) to continue from.
    #[arg(long = "resume_from_checkpoint", visible_alias = "resume-from-checkpoint")]
    resume_from_checkpoint: Option<PathBuf>,
    #[arg(long = "weight_decay", visible_alias = "weight-decay", default_value_t = 0.0)]
    weight_decay: f32,
    /// Clip gradients to this global norm (0: off).
    #[arg(long = "max_grad_norm", visible_alias = "max-grad-norm", default_value_t = 1.0)]
    max_grad_norm: f32,
    #[arg(long = "adam_beta1", visible_alias = "adam-beta1", default_value_t = 0.9)]
    adam_beta1: f32,
    #[arg(long = "adam_beta2", visible_alias = "adam-beta2", default_value_t = 0.999)]
    adam_beta2: f32,
    #[arg(long = "adam_epsilon", visible_alias = "adam-epsilon", default_value_t = 1e-8)]
    adam_epsilon: f32,
    /// Keep only each block's input and recompute its activations in the backward pass.
    #[arg(long = "gradient_checkpointing", visible_alias = "gradient-checkpointing")]
    gradient_checkpointing: bool,
    /// A Jinja chat template file to use instead of the model's (e.g. for a base model).
    #[arg(long = "chat_template", visible_alias = "chat-template")]
    chat_template: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long, short = 't')]
    threads: Option<usize>,
    /// Read and tokenize the data, print the plan and one example with its trained spans marked, and stop.
    #[arg(long = "dry_run", visible_alias = "dry-run")]
    dry_run: bool,
}

fn parse_method(s: &str) -> Result<Method, String> {
    match s {
        "lora" => Ok(Method::Lora),
        "full" => Ok(Method::Full),
        other => Err(format!("`{other}` is not a method; expected lora or full")),
    }
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd.sub {
        Some(TrainSub::Merge(m)) => merge(m),
        None => train(cmd.args),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    set_threads(args.threads);
    let resolved = luodi_models::ModelStore::from_env().resolve(&args.model, true)?;
    let target_modules = parse_targets(&args.target_modules)?;
    let learning_rate = args.learning_rate.unwrap_or(match args.method {
        Method::Lora => 2e-4,
        Method::Full => 2e-5,
    });
    let config = TrainConfig {
        model_path: resolved.path.clone(),
        model_name: resolved.name.clone(),
        chat_template: args.chat_template,
        // Required by clap unless a subcommand is given (then this path is not taken).
        train_file: args.train_file.context("--train_file is required")?,
        validation_file: args.validation_file,
        validation_split: args.validation_split,
        output_dir: args.output_dir.context("--output_dir is required")?,
        per_device_train_batch_size: args.per_device_train_batch_size,
        gradient_accumulation_steps: args.gradient_accumulation_steps,
        num_train_epochs: args.num_train_epochs,
        max_steps: args.max_steps,
        learning_rate,
        lr_scheduler_type: args.lr_scheduler_type,
        warmup_steps: args.warmup_steps,
        warmup_ratio: args.warmup_ratio,
        max_seq_length: args.max_seq_length,
        seed: args.seed,
        method: args.method,
        lora_r: args.lora_r,
        lora_alpha: args.lora_alpha,
        lora_dropout: args.lora_dropout,
        target_modules,
        save_steps: args.save_steps,
        eval_steps: args.eval_steps,
        logging_steps: args.logging_steps,
        resume_from_checkpoint: args.resume_from_checkpoint,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        adam_beta1: args.adam_beta1,
        adam_beta2: args.adam_beta2,
        adam_epsilon: args.adam_epsilon,
        gradient_checkpointing: args.gradient_checkpointing,
    };
    if args.dry_run {
        config.validate()?;
        let engine = luodi_train::trainer::load_engine(&config)?;
        return Ok(luodi_train::trainer::dry_run(&config, &engine, &mut std::io::stdout())?);
    }
    let summary =
        luodi_train::trainer::run(&config).with_context(|| format!("training on {}", config.model_path.display()))?;
    println!(
        "trained {} steps ({} trainable parameters): train loss {:.4}{}, {:.0} tokens/s; wrote {}",
        summary.steps,
        summary.trainable_parameters,
        summary.train_loss,
        summary.eval_loss.map_or(String::new(), |l| format!(", eval loss {l:.4} (perplexity {:.2})", l.exp())),
        summary.tokens_per_second,
        summary.output_dir.display()
    );
    Ok(())
}
