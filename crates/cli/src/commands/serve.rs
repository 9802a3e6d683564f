//! `luodi serve`: settings from defaults < `luodi.toml` < `LUODI_*` variables < flags.

use crate::options::set_threads;
use anyhow::{Context, Result};
use clap::Args;
use luodi_server::app::{router, ApiKeys};
use luodi_server::config::ServerConfig;
use luodi_server::state::AppState;
use luodi_server::worker::EngineBackend;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (TOML); default ./luodi.toml when it exists.
    #[arg(long, env = "LUODI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, env = "LUODI_HOST")]
    pub host: Option<String>,
    /// Port [default: 8080].
    #[arg(long, short = 'p', env = "LUODI_PORT")]
    pub port: Option<u16>,
    /// Catalog name, .gguf path or hf:owner/repo/file.gguf [default: smollm2-135m].
    #[arg(long, short = 'm', env = "LUODI_MODEL")]
    pub model: Option<String>,
    /// Embedding model for /v1/embeddings; "" disables it [default: minilm-l6].
    #[arg(long, env = "LUODI_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Require this API key (repeatable). Keys are never logged.
    #[arg(long = "api-key", env = "LUODI_API_KEY", hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// A file with one API key per line.
    #[arg(long, env = "LUODI_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Largest request body in bytes [default: 2 MiB].
    #[arg(long, env = "LUODI_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Requests allowed to wait; more get 429 with Retry-After [default: 64].
    #[arg(long, env = "LUODI_MAX_WAITING")]
    pub max_waiting: Option<usize>,
    /// Most sequences batched in one forward pass [default: 16].
    #[arg(long, env = "LUODI_MAX_NUM_SEQS")]
    pub max_num_seqs: Option<usize>,
    /// Most tokens per forward pass, decodes plus prefill chunks [default: 256].
    #[arg(long, env = "LUODI_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// KV cache budget for all sequences, MiB [default: 1024].
    #[arg(long, env = "LUODI_KV_MEMORY_MIB")]
    pub kv_memory_mib: Option<usize>,
    /// Longest a generation may run, seconds; 0 for no limit [default: 120].
    #[arg(long, env = "LUODI_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "LUODI_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<f64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "LUODI_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// CPU threads for the matrix kernels (default: all cores).
    #[arg(long, short = 't', env = "LUODI_THREADS")]
    pub threads: Option<usize>,
}

impl ServeArgs {
    fn settings(&self) -> Result<ServerConfig> {
        let file = self.config.clone().or_else(|| Some(PathBuf::from("luodi.toml")).filter(|p| p.is_file()));
        let mut c = match &file {
            Some(path) => ServerConfig::from_file(path).map_err(anyhow::Error::msg)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = &self.host {
            c.host = v.clone();
        }
        if let Some(v) = self.port {
            c.port = v;
        }
        if let Some(v) = &self.model {
            c.model = v.clone();
        }
        if let Some(v) = &self.embedding_model {
            c.embedding_model = v.clone();
        }
        c.api_keys.extend(self.api_keys.iter().cloned());
        if let Some(v) = &self.api_keys_file {
            c.api_keys_file = Some(v.clone());
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.max_waiting {
            c.max_waiting = v;
        }
        if let Some(v) = self.max_num_seqs {
            c.max_num_seqs = v;
        }
        if let Some(v) = self.max_batch_tokens {
            c.max_batch_tokens = v;
        }
        if let Some(v) = self.kv_memory_mib {
            c.kv_memory_mib = v;
        }
        c.batch().map_err(anyhow::Error::msg)?;
        if let Some(v) = self.request_timeout {
            anyhow::ensure!(v >= 0.0 && v.is_finite(), "--request-timeout must be >= 0 seconds, got {v}");
            c.request_timeout = (v > 0.0).then(|| Duration::from_secs_f64(v));
        }
        if let Some(v) = self.shutdown_grace {
            anyhow::ensure!(v >= 0.0 && v.is_finite(), "--shutdown-grace must be >= 0 seconds, got {v}");
            c.shutdown_grace = Duration::from_secs_f64(v);
        }
        if let Some(v) = &self.log_format {
            c.log_format = v.clone();
        }
        anyhow::ensure!(
            matches!(c.log_format.as_str(), "text" | "json"),
            "log format must be `text` or `json`, got `{}`",
            c.log_format
        );
        Ok(c)
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.settings()?;
    // Built before the model loads, so a bad `[guard]` or `[styles]` setting fails fast.
    let guard = luodi_server::guarding::Guarding::from_config(&config).map_err(anyhow::Error::msg)?;
    if guard.ephemeral_key() {
        tracing::warn!("guard.pii.hash_key is not set: pseudonyms use a random per-process key and change on restart");
    }
    set_threads(args.threads);
    let keys = config.load_keys().map_err(anyhow::Error::msg)?;
    if keys.is_empty() {
        tracing::warn!("no API keys configured: every client on {} may use the API", config.host);
    }
    let store = luodi_models::ModelStore::from_env();
    let resolved = store.resolve(&config.model, true)?;
    let engine = luodi_engine::Engine::load(&resolved.path)
        .with_context(|| format!("loading model `{}` from {}", config.model, resolved.path.display()))?;
    let chat_template = engine.has_chat_template();
    let embedder: Option<Arc<dyn luodi_server::backend::Embedder>> = if config.embedding_model.is_empty() {
        None
    } else {
        let dir = store.resolve(&config.embedding_model, true)?.path;
        let model = luodi_engine::embedding::EmbeddingModel::load(&dir)
            .with_context(|| format!("loading embedding model `{}` from {}", config.embedding_model, dir.display()))?;
        Some(Arc::new((config.embedding_model.clone(), model)))
    };
    let batch = config.batch().map_err(anyhow::Error::msg)?;
    let backend = EngineBackend::start(engine, config.model.clone(), config.max_waiting, batch);
    let state = AppState {
        backend: Arc::new(backend),
        embedder,
        config: Arc::new(config.clone()),
        metrics: luodi_server::metrics_handle(),
        chat_template,
        guard,
    };
    let app = router(state, ApiKeys::new(keys));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(luodi_server::serve(app, &config))?;
    tracing::info!("stopped");
    Ok(())
}
