//! `[cache]` in `luodi.toml`.

use serde::Deserialize;

/// Which requests may be answered from (and stored in) the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Off,
    /// Only requests whose answer is determined by the request: temperature 0 or a fixed seed.
    Deterministic,
    /// Every request, sampled ones too (the first sampled answer is replayed).
    Always,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub mode: CacheMode,
    /// Seconds an entry lives.
    pub ttl_secs: u64,
    /// In-process store bounds: entries and bytes (answers plus keys).
    pub max_entries: u64,
    pub max_bytes: u64,
    /// `redis://host:port[/db]`: share the cache between replicas instead of in-process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    pub redis_prefix: String,
    /// Per-operation limit; a slower Redis is treated as down for this request.
    pub redis_timeout_ms: u64,
    pub redis_pool_size: usize,
    pub semantic: SemanticConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            mode: CacheMode::Deterministic,
            ttl_secs: 3600,
            max_entries: 10_000,
            max_bytes: 64 << 20,
            redis_url: None,
            redis_prefix: "luodi:cache".into(),
            redis_timeout_ms: 100,
            redis_pool_size: 16,
            semantic: SemanticConfig::default(),
        }
    }
}

/// `[cache.semantic]`: answer paraphrases of a cached single-turn question (opt-in).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticConfig {
    pub enabled: bool,
    /// Cosine similarity at or above which a cached question may count as the same question
    /// (it must also name the same things: [`crate::agreement`]). The default comes from the
    /// measured curve (BENCHMARKS.md, test `semantic_threshold`, 400 labelled pairs): with the
    /// term check, precision is 1.000 at every threshold from 0.50 to 0.96 and recall falls
    /// from 0.182 to 0.176 at 0.90; 0.90 keeps a margin for term-equal questions the set does
    /// not cover. Without the term check no threshold reaches 0.98 precision on this set.
    pub threshold: f32,
    /// Questions kept per store (oldest dropped first); bounds the client-side scan on Redis.
    pub max_entries: usize,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig { enabled: false, threshold: DEFAULT_THRESHOLD, max_entries: 2000 }
    }
}

/// See [`SemanticConfig::threshold`].
pub const DEFAULT_THRESHOLD: f32 = 0.9;

impl CacheConfig {
    /// Checks values serde cannot; errors name the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_secs == 0 {
            return Err("cache.ttl_secs must be at least 1 (use cache.mode = \"off\" to disable)".into());
        }
        if self.max_entries == 0 || self.max_bytes == 0 {
            return Err("cache.max_entries and cache.max_bytes must be at least 1".into());
        }
        if !(self.semantic.threshold > 0.0 && self.semantic.threshold <= 1.0) {
            return Err(format!("cache.semantic.threshold must be in (0, 1], got {}", self.semantic.threshold));
        }
        if self.semantic.max_entries == 0 {
            return Err("cache.semantic.max_entries must be at least 1".into());
        }
        if self.redis_pool_size == 0 || self.redis_timeout_ms == 0 {
            return Err("cache.redis_pool_size and cache.redis_timeout_ms must be at least 1".into());
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return Err(format!("cache.redis_url must start with redis://, rediss:// or unix://, got `{url}`"));
            }
        }
        Ok(())
    }
}
