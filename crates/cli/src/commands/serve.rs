//! `luodi serve`: settings from defaults < `luodi.toml` < `LUODI_*` variables < flags.

use crate::options::set_threads;
use anyhow::{Context, Result};
use clap::Args;
use luodi_engine_backend::{batch_config, EngineBackend, EngineEmbedder};
use luodi_server::builder::{build, Parts};
use luodi_server::config::ServerConfig;
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
    /// Seconds a request head may take to arrive after its first byte [default: 10].
    #[arg(long, env = "LUODI_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<f64>,
    /// Seconds an open connection may wait for its next request [default: 60].
    #[arg(long, env = "LUODI_IDLE_TIMEOUT")]
    pub idle_timeout: Option<f64>,
    /// Open connections beyond this get 503 and are closed [default: 1024].
    #[arg(long, env = "LUODI_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "LUODI_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Response cache: off, deterministic (temperature 0 or a seed) or always [default: deterministic].
    #[arg(long, env = "LUODI_CACHE_MODE")]
    pub cache_mode: Option<String>,
    /// Share the response cache through Redis (redis://host:port) instead of in-process.
    #[arg(long, env = "LUODI_CACHE_REDIS_URL", hide_env_values = true)]
    pub cache_redis_url: Option<String>,
    /// Interaction store: sqlite://PATH or postgres://...; "none" records nothing
    /// [default: sqlite://$LUODI_HOME/luodi.db].
    #[arg(long, env = "LUODI_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    /// Answer paraphrases of cached single-turn questions (semantic cache) [default: off].
    #[arg(long, env = "LUODI_CACHE_SEMANTIC")]
    pub cache_semantic: Option<bool>,
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
        for (flag, value, target) in [
            ("--header-read-timeout", self.header_read_timeout, &mut c.header_read_timeout),
            ("--idle-timeout", self.idle_timeout, &mut c.idle_timeout),
        ] {
            if let Some(v) = value {
                anyhow::ensure!(v > 0.0 && v.is_finite(), "{flag} must be more than 0 seconds, got {v}");
                *target = Duration::from_secs_f64(v);
            }
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        c.connection_limits().map_err(anyhow::Error::msg)?;
        if let Some(v) = &self.log_format {
            c.log_format = v.clone();
        }
        if let Some(v) = &self.cache_mode {
            c.cache.mode = match v.as_str() {
                "off" => luodi_cache::CacheMode::Off,
                "deterministic" => luodi_cache::CacheMode::Deterministic,
                "always" => luodi_cache::CacheMode::Always,
                other => anyhow::bail!("--cache-mode must be off, deterministic or always, got `{other}`"),
            };
        }
        if let Some(v) = &self.cache_redis_url {
            c.cache.redis_url = Some(v.clone()).filter(|u| !u.is_empty());
        }
        if let Some(v) = &self.store_url {
            if v == "none" {
                c.store.enabled = false;
            } else {
                c.store.url = Some(v.clone());
            }
        }
        if let Some(v) = self.cache_semantic {
            c.cache.semantic.enabled = v;
        }
        c.cache.validate().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            matches!(c.log_format.as_str(), "text" | "json"),
            "log format must be `text` or `json`, got `{}`",
            c.log_format
        );
        Ok(c)
    }
}

/// The sha256 of a model file that no catalog entry pins (local paths, `hf:` specs), so the
/// cache key changes when the file does.
fn file_sha256(path: &std::path::Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("hashing {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.settings()?;
    // Built before the model loads, so a bad `[guard]` or `[styles]` setting fails fast.
    let guard = luodi_server::guarding::Guarding::from_config(&config).map_err(anyhow::Error::msg)?;
    if guard.ephemeral_key() {
        tracing::warn!("guard.pii.hash_key is not set: pseudonyms use a random per-process key and change on restart");
    }
    set_threads(args.threads);
    // Read now so a missing keys file fails before the model loads.
    config.load_keys().map_err(anyhow::Error::msg)?;
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
        Some(Arc::new(EngineEmbedder::new(config.embedding_model.clone(), model)))
    };
    let batch = batch_config(config.batch().map_err(anyhow::Error::msg)?);
    let cache = match config.cache.mode {
        luodi_cache::CacheMode::Off => None,
        _ => Some(Arc::new(luodi_cache::ResponseCache::new(config.cache.clone()).map_err(anyhow::Error::msg)?)),
    };
    if config.cache.semantic.enabled && embedder.is_none() {
        anyhow::bail!("cache.semantic.enabled needs the embedding model; --embedding-model is \"\"");
    }
    let model_version = format!(
        "{}@{}",
        resolved.name,
        match (&resolved.sha256, &cache) {
            (Some(sha), _) => sha.clone(),
            (None, Some(_)) => file_sha256(&resolved.path)?,
            (None, None) => "unhashed".into(),
        }
    );
    if let Some(cache) = &cache {
        let store = match &config.cache.redis_url {
            Some(url) => format!("redis {}", luodi_cache::redact_url(url)),
            None => "in-process".into(),
        };
        tracing::info!(store, mode = ?config.cache.mode, semantic = config.cache.semantic.enabled, model_version, "response cache on ({})", cache.store_name());
    }
    let backend = EngineBackend::start(engine, config.model.clone(), config.max_waiting, batch);
    let parts = Parts { backend: Arc::new(backend), embedder, chat_template, model_version, guard, cache };
    let default_store = format!("sqlite://{}", store.home().join("luodi.db").display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let built = build(config, parts, &default_store).await.map_err(anyhow::Error::msg)?;
        let served = luodi_server::serve(built.router, &built.config).await;
        if let Some(r) = &built.recorder {
            // Graceful shutdown: nothing buffered is lost.
            r.shutdown().await;
        }
        served.map_err(anyhow::Error::from)
    })?;
    tracing::info!("stopped");
    Ok(())
}
