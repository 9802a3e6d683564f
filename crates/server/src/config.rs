//! Server settings: defaults, then `luodi.toml`, then `LUODI_*` environment variables,
//! then command-line flags (the CLI merges the last two through clap).

use crate::guarding::StyleProfile;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    pub port: u16,
    /// Catalog name, .gguf path or hf: spec.
    pub model: String,
    /// Embedding model for `/v1/embeddings` (catalog name or model directory; empty: none).
    pub embedding_model: String,
    /// Accepted API keys (none: no authentication).
    pub api_keys: Vec<String>,
    /// A file with one API key per line (blank lines and `#` comments ignored).
    pub api_keys_file: Option<PathBuf>,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Requests waiting beyond this many get 429.
    pub max_waiting: usize,
    /// Most sequences decoded together in one forward pass.
    pub max_num_seqs: usize,
    /// Most tokens in one forward pass (decodes plus prefill chunks): bounds how long a
    /// long prompt can stall running answers.
    pub max_batch_tokens: usize,
    /// KV cache budget across all sequences, MiB.
    pub kv_memory_mib: usize,
    /// Longest a generation may run, seconds (`None`: no limit).
    #[serde(with = "opt_secs")]
    pub request_timeout: Option<Duration>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT, seconds.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
    /// `text` or `json` logs.
    pub log_format: String,
    /// A request head must arrive whole within this many seconds of its first byte.
    #[serde(with = "secs")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this many idle seconds.
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
    /// Open connections beyond this get a 503 and are closed.
    pub max_connections: usize,
    /// Guardrails on prompts and answers (`[guard]`: PII, lexicons); see `luodi_guard`.
    pub guard: luodi_guard::GuardConfig,
    /// Named answer styles (`[styles.NAME]`), chosen per request with `"style"` or the
    /// `x-luodi-style` header.
    pub styles: BTreeMap<String, StyleProfile>,
    /// API key -> style name, for requests that choose none (`key_styles = { "KEY" = "professional" }`).
    pub key_styles: BTreeMap<String, String>,
    /// The response cache (`[cache]`): mode, TTL, bounds, Redis, semantic lookup.
    pub cache: luodi_cache::CacheConfig,
    /// The interaction store (`[store]`).
    pub store: StoreSettings,
}

/// How much one continuous batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_num_seqs: usize,
    pub max_batch_tokens: usize,
    pub kv_memory_bytes: usize,
}

/// `[store]`: where interactions and feedback go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub enabled: bool,
    /// `sqlite://PATH` or `postgres://...`; default `sqlite://$LUODI_HOME/luodi.db`.
    pub url: Option<String>,
    pub table_prefix: String,
    /// Interactions older than this many days are deleted (hourly); 0 keeps everything.
    pub retention_days: u32,
    /// Records that may wait for the writer before new ones are dropped (and counted).
    pub buffer: usize,
    /// Most records per write transaction, and the longest a record waits (ms).
    pub batch: usize,
    pub flush_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            enabled: true,
            url: None,
            table_prefix: "luodi_".into(),
            retention_days: 0,
            buffer: 10_000,
            batch: 256,
            flush_ms: 200,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            model: "smollm2-135m".into(),
            embedding_model: "minilm-l6".into(),
            api_keys: vec![],
            api_keys_file: None,
            max_body_bytes: 2 * 1024 * 1024,
            max_waiting: 64,
            max_num_seqs: 16,
            max_batch_tokens: 256,
            kv_memory_mib: 1024,
            request_timeout: Some(Duration::from_secs(120)),
            shutdown_grace: Duration::from_secs(30),
            log_format: "text".into(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            guard: luodi_guard::GuardConfig::default(),
            styles: BTreeMap::new(),
            key_styles: BTreeMap::new(),
            cache: luodi_cache::CacheConfig::default(),
            store: StoreSettings::default(),
        }
    }
}

impl ServerConfig {
    /// The connection limits, checked (a zero would close or refuse every connection).
    pub fn connection_limits(&self) -> Result<crate::listener::ConnectionLimits, String> {
        if self.max_connections == 0 {
            return Err("`max_connections` must be at least 1".into());
        }
        for (name, v) in [("header_read_timeout", self.header_read_timeout), ("idle_timeout", self.idle_timeout)] {
            if v.is_zero() {
                return Err(format!("`{name}` must be more than 0 seconds"));
            }
        }
        Ok(crate::listener::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        })
    }

    /// The continuous batching limits, checked (the engine adapter turns them into its own
    /// batch configuration).
    pub fn batch(&self) -> Result<BatchLimits, String> {
        for (name, v) in [
            ("max_num_seqs", self.max_num_seqs),
            ("max_batch_tokens", self.max_batch_tokens),
            ("kv_memory_mib", self.kv_memory_mib),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        Ok(BatchLimits {
            max_num_seqs: self.max_num_seqs,
            max_batch_tokens: self.max_batch_tokens,
            kv_memory_bytes: self.kv_memory_mib << 20,
        })
    }

    /// Reads a `luodi.toml`; unknown keys are an error that names them. Relative lexicon
    /// paths in `[guard]` are resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        config.guard.resolve_paths(base);
        Ok(config)
    }

    /// All accepted keys: configured ones plus the keys file's.
    pub fn load_keys(&self) -> Result<Vec<String>, String> {
        let mut keys = self.api_keys.clone();
        if let Some(path) = &self.api_keys_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
            keys.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string),
            );
        }
        Ok(keys)
    }
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?.max(0.0)))
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = f64::deserialize(d)?;
        Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("luodi.toml");
        std::fs::write(&path, "port = 9000\nrequest_timeout = 0\napi_keys = [\"k1\"]\n").unwrap();
        let c = ServerConfig::from_file(&path).unwrap();
        assert_eq!((c.port, c.request_timeout, c.host.as_str()), (9000, None, "127.0.0.1"));
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let err = ServerConfig::from_file(&path).unwrap_err();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn guard_and_styles_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("luodi.toml");
        std::fs::write(
            &path,
            "[guard.pii]\nrestore_pseudonyms = true\n[[guard.lexicons]]\ncategory = \"x\"\naction = \"block\"\npath = \"words.txt\"\n\
             [styles]\nprofessional = { tone = \"professional\", language = \"zh\" }\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(&path).unwrap();
        assert!(c.guard.pii.restore_pseudonyms);
        assert_eq!(c.guard.lexicons[0].path.as_deref(), Some(dir.path().join("words.txt").as_path()));
        assert_eq!(c.styles["professional"].tone.as_deref(), Some("professional"));
        std::fs::write(&path, "[styles.a]\ntone = \"x\"\ncolour = \"red\"\n").unwrap();
        let err = ServerConfig::from_file(&path).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn keys_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# ops team\nkey-a\n\n key-b \n").unwrap();
        let c = ServerConfig { api_keys: vec!["k".into()], api_keys_file: Some(path), ..Default::default() };
        assert_eq!(c.load_keys().unwrap(), vec!["k", "key-a", "key-b"]);
    }
}
