//! Options shared by the commands that run a model.

use anyhow::{Context, Result};
use clap::Args;
use luodi_engine::{Engine, SamplingParams};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Catalog name (see `luodi models list`), a path to a .gguf file, or hf:owner/repo/file.gguf.
    #[arg(long, short = 'm', default_value = luodi_models::DEFAULT_MODEL, env = "LUODI_MODEL")]
    pub model: String,

    /// CPU threads for the matrix kernels (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,

    /// A Jinja chat template file to use instead of the model's own.
    #[arg(long)]
    pub chat_template: Option<std::path::PathBuf>,
}

impl ModelArgs {
    /// Resolves (fetching a catalog model on first use) and loads the model.
    pub fn load(&self) -> Result<Engine> {
        set_threads(self.threads);
        let store = luodi_models::ModelStore::from_env();
        let resolved = store.resolve(&self.model, true)?;
        let mut engine = Engine::load(&resolved.path)
            .with_context(|| format!("loading model `{}` from {}", self.model, resolved.path.display()))?;
        if let Some(path) = &self.chat_template {
            let src =
                std::fs::read_to_string(path).with_context(|| format!("reading chat template {}", path.display()))?;
            engine.set_chat_template(src)?;
        }
        Ok(engine)
    }
}

/// Applies a PEFT LoRA adapter to `engine`. An adapter that records the base it was trained
/// on (`luodi train` writes `luodi.base_sha256`) must be applied to that same file.
pub fn apply_lora(engine: &mut Engine, dir: &std::path::Path) -> Result<()> {
    let adapter = engine.load_lora(dir).with_context(|| format!("--lora {}", dir.display()))?;
    if let Some(want) = adapter.metadata.get("luodi.base_sha256") {
        let path = engine.path().to_path_buf();
        let have = luodi_models::hash_file(&path, |_| {}).with_context(|| format!("reading {}", path.display()))?;
        anyhow::ensure!(
            &have == want,
            "--lora {}: the adapter was trained on a base model with sha256 {want}, but {} has sha256 {have}; use the model it was trained on",
            dir.display(),
            path.display()
        );
    }
    Ok(())
}

/// candle reads its thread count from these variables when its pool first starts, so this
/// must run before the first tensor operation.
pub fn set_threads(threads: Option<usize>) {
    let n = threads
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Maximum tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7, allow_hyphen_values = true)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    #[arg(long, default_value_t = 0.95, allow_hyphen_values = true)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Drop tokens less likely than this fraction of the best one (0: off).
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    pub min_p: f32,
    /// Penalize tokens repeated within the last --penalty-last-n tokens (1: off).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub penalty_last_n: usize,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub presence_penalty: f32,
    /// Random seed: the same seed gives the same output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text is generated (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn params(&self, top_logprobs: usize) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            penalty_last_n: self.penalty_last_n,
            seed: self.seed,
            top_logprobs,
        }
    }
}
