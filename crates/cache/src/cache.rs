//! [`ResponseCache`]: the store the configuration chose, exact and semantic lookups, purge and
//! stats, with lookup latency and store errors as metrics.

use crate::config::CacheConfig;
use crate::entry::CachedAnswer;
use crate::key::version_tag;
use crate::memory::MemoryStore;
use crate::redis_store::RedisStore;
use crate::semantic::{best, MemoryIndex, Question};
use crate::CacheError;
use std::time::{Duration, Instant};

enum Store {
    Memory { store: MemoryStore, semantic: MemoryIndex },
    Redis(RedisStore),
}

pub struct ResponseCache {
    config: CacheConfig,
    store: Store,
    writes: crate::settle::InFlight,
}

/// A semantic match: the answer, the cached question it answered, and how close it was.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticHit {
    pub answer: CachedAnswer,
    pub question: String,
    pub similarity: f32,
}

/// Counts for `luodi cache stats` and the admin endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheStats {
    pub store: &'static str,
    pub mode: String,
    /// Stored answers (for Redis: keys under the prefix, semantic lists included).
    pub entries: u64,
    /// In-process only: weighted bytes in use and the bound.
    pub bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub semantic_questions: Option<u64>,
    pub ttl_secs: u64,
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> Result<ResponseCache, String> {
        config.validate()?;
        let ttl = Duration::from_secs(config.ttl_secs);
        let store = match &config.redis_url {
            Some(url) => Store::Redis(RedisStore::new(
                url,
                config.redis_pool_size,
                Duration::from_millis(config.redis_timeout_ms),
            )?),
            None => Store::Memory {
                store: MemoryStore::new(config.max_entries, config.max_bytes, ttl),
                semantic: MemoryIndex::new(config.semantic.max_entries, ttl),
            },
        };
        Ok(ResponseCache { config, store, writes: Default::default() })
    }

    /// Background writes of this cache: the server begins one per stored answer, and
    /// `writes().settled()` waits for them (shutdown, tests).
    pub fn writes(&self) -> &crate::settle::InFlight {
        &self.writes
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Ends a Redis cool-down now (no-op for the in-process store).
    pub fn retry_store_now(&self) {
        if let Store::Redis(redis) = &self.store {
            redis.retry_now();
        }
    }

    pub fn store_name(&self) -> &'static str {
        match self.store {
            Store::Memory { .. } => "memory",
            Store::Redis(_) => "redis",
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.config.ttl_secs)
    }

    /// The prefix of every key of one model version.
    fn version_prefix(&self, model_version: &str) -> String {
        format!("{}:{}:", self.config.redis_prefix, version_tag(model_version))
    }

    /// The store key of an exact key (see [`crate::KeyInput::exact`]).
    pub fn store_key(&self, model_version: &str, exact: &str) -> String {
        format!("{}{exact}", self.version_prefix(model_version))
    }

    fn semantic_list(&self, model_version: &str, context: &str) -> String {
        format!("{}sem:{context}", self.version_prefix(model_version))
    }

    fn observe<T>(&self, op: &'static str, started: Instant, result: &Result<T, CacheError>) {
        let store = self.store_name();
        metrics::histogram!("luodi_cache_lookup_seconds", "store" => store, "op" => op)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            metrics::counter!("luodi_cache_errors_total", "store" => store, "op" => op, "error" => e.label())
                .increment(1);
        }
    }

    /// The answer stored under `store_key`.
    pub async fn get(&self, store_key: &str) -> Result<Option<CachedAnswer>, CacheError> {
        let started = Instant::now();
        let result = match &self.store {
            Store::Memory { store, .. } => Ok(store.get(store_key).await.and_then(|b| CachedAnswer::from_bytes(&b))),
            Store::Redis(redis) => redis.get(store_key).await.map(|b| b.and_then(|b| CachedAnswer::from_bytes(&b))),
        };
        self.observe("get", started, &result);
        result
    }

    /// The closest cached question of `context` at or above the configured threshold.
    pub async fn get_semantic(
        &self,
        model_version: &str,
        context: &str,
        question: &str,
        embedding: &[f32],
    ) -> Result<Option<SemanticHit>, CacheError> {
        let started = Instant::now();
        let threshold = self.config.semantic.threshold;
        let found = match &self.store {
            Store::Memory { semantic, .. } => Ok(semantic.best(context, question, embedding, threshold)),
            Store::Redis(redis) => redis.list(&self.semantic_list(model_version, context)).await.map(|items| {
                let questions: Vec<Question> = items.iter().filter_map(|b| Question::from_bytes(b)).collect();
                best(&questions, question, embedding, threshold).map(|(q, s)| (q.clone(), s))
            }),
        };
        let result = match found {
            Ok(Some((question, similarity))) => match self.get(&question.key).await {
                Ok(Some(answer)) => Ok(Some(SemanticHit { answer, question: question.text, similarity })),
                Ok(None) => {
                    // The answer expired or was evicted: forget the question too.
                    if let Store::Memory { semantic, .. } = &self.store {
                        semantic.remove(&question.key);
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        self.observe("semantic", started, &result);
        result
    }

    /// Stores an answer; with `semantic = Some((context, question, embedding))` it also
    /// becomes findable by paraphrase.
    pub async fn put(
        &self,
        model_version: &str,
        store_key: &str,
        answer: &CachedAnswer,
        semantic: Option<(&str, &str, Vec<f32>)>,
    ) -> Result<(), CacheError> {
        let started = Instant::now();
        let bytes = answer.to_bytes();
        let result = match &self.store {
            Store::Memory { store, semantic: index } => {
                store.put(store_key.to_string(), bytes).await;
                if let Some((context, question, embedding)) = semantic {
                    index.insert(context, Question { key: store_key.into(), text: question.into(), embedding });
                }
                Ok(())
            }
            Store::Redis(redis) => {
                let stored = redis.put(store_key, &bytes, self.ttl()).await;
                match (stored, semantic) {
                    (Ok(()), Some((context, question, embedding))) => {
                        let item = Question { key: store_key.into(), text: question.into(), embedding }.to_bytes();
                        let list = self.semantic_list(model_version, context);
                        redis.push_capped(&list, &item, self.config.semantic.max_entries, self.ttl()).await
                    }
                    (result, _) => result,
                }
            }
        };
        self.observe("put", started, &result);
        result
    }

    /// Removes one model version's entries, or all of this cache's entries; returns how many
    /// (in-process: entries before minus after).
    pub async fn purge(&self, model_version: Option<&str>) -> Result<u64, CacheError> {
        let prefix = match model_version {
            Some(v) => self.version_prefix(v),
            None => format!("{}:", self.config.redis_prefix),
        };
        match &self.store {
            Store::Memory { store, semantic } => {
                let (before, _) = store.usage().await;
                store.purge(if model_version.is_some() { &prefix } else { "" }).await;
                semantic.clear(if model_version.is_some() { &prefix } else { "" });
                let (after, _) = store.usage().await;
                Ok(before.saturating_sub(after))
            }
            Store::Redis(redis) => redis.purge(&prefix).await,
        }
    }

    pub async fn stats(&self) -> Result<CacheStats, CacheError> {
        let mode = format!("{:?}", self.config.mode).to_lowercase();
        Ok(match &self.store {
            Store::Memory { store, semantic } => {
                let (entries, bytes) = store.usage().await;
                CacheStats {
                    store: "memory",
                    mode,
                    entries,
                    bytes: Some(bytes),
                    max_bytes: Some(self.config.max_bytes),
                    semantic_questions: Some(semantic.len() as u64),
                    ttl_secs: self.config.ttl_secs,
                }
            }
            Store::Redis(redis) => CacheStats {
                store: "redis",
                mode,
                entries: redis.count(&format!("{}:", self.config.redis_prefix)).await?,
                bytes: None,
                max_bytes: None,
                semantic_questions: None,
                ttl_secs: self.config.ttl_secs,
            },
        })
    }
}
