//! The shared store: Redis through a deadpool connection pool. Every operation has a deadline;
//! after a failure the store is skipped for a short cool-down, so a slow or dead Redis costs
//! requests at most one timeout each cool-down instead of one per request.

use crate::CacheError;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the store is skipped after a failure.
const COOL_DOWN: Duration = Duration::from_secs(2);
/// Admin operations (purge, counting) may scan many keys.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    timeout: Duration,
    /// Milliseconds since `epoch` until which the store is skipped.
    down_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl RedisStore {
    /// Creates the pool; connections are opened on first use, so a Redis that is down at start
    /// only means cache misses until it is up.
    pub fn new(url: &str, pool_size: usize, timeout: Duration) -> Result<RedisStore, String> {
        let mut config = Config::from_url(url);
        let mut pool = PoolConfig::new(pool_size);
        pool.timeouts = Timeouts { wait: Some(timeout), create: Some(timeout), recycle: Some(timeout) };
        config.pool = Some(pool);
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| format!("cache.redis_url `{}`: {e}", redact_url(url)))?;
        Ok(RedisStore { pool, timeout, down_until_ms: Arc::new(AtomicU64::new(0)), epoch: Instant::now() })
    }

    /// Ends a cool-down now: the next operation tries Redis again (when an operator knows it
    /// is back, and for tests, which must not sleep through the cool-down).
    pub fn retry_now(&self) {
        self.down_until_ms.store(0, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs `op` on a pooled connection within `limit`, honouring and updating the cool-down.
    async fn run<T, F, Fut>(&self, op_name: &'static str, limit: Duration, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        if self.now_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            return Err(CacheError::Unavailable);
        }
        let result = tokio::time::timeout(limit, async {
            let conn = self.pool.get().await.map_err(|e| CacheError::Redis(e.to_string()))?;
            op(conn).await.map_err(|e| CacheError::Redis(e.to_string()))
        })
        .await
        .unwrap_or(Err(CacheError::Timeout(limit)));
        if let Err(e) = &result {
            self.down_until_ms.store(self.now_ms() + COOL_DOWN.as_millis() as u64, Ordering::Relaxed);
            tracing::warn!(op = op_name, error = %e, "redis cache unavailable; serving without it for {COOL_DOWN:?}");
        }
        result
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.run("get", self.timeout, |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.run("set", self.timeout, |mut c| async move {
            redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl.as_secs().max(1)).query_async(&mut c).await
        })
        .await
    }

    /// Pushes onto a capped list (newest first) and refreshes its TTL, atomically.
    pub async fn push_capped(&self, list: &str, item: &[u8], max: usize, ttl: Duration) -> Result<(), CacheError> {
        self.run("push", self.timeout, |mut c| async move {
            redis::pipe()
                .atomic()
                .cmd("LPUSH")
                .arg(list)
                .arg(item)
                .ignore()
                .cmd("LTRIM")
                .arg(list)
                .arg(0)
                .arg(max as i64 - 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(list)
                .arg(ttl.as_secs().max(1))
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    pub async fn list(&self, list: &str) -> Result<Vec<Vec<u8>>, CacheError> {
        self.run("lrange", self.timeout, |mut c| async move {
            redis::cmd("LRANGE").arg(list).arg(0).arg(-1).query_async(&mut c).await
        })
        .await
    }

    /// Deletes every key starting with `prefix` (SCAN + UNLINK, never KEYS); returns how many.
    pub async fn purge(&self, prefix: &str) -> Result<u64, CacheError> {
        self.scan("purge", prefix, true).await
    }

    /// Counts keys starting with `prefix` (SCAN).
    pub async fn count(&self, prefix: &str) -> Result<u64, CacheError> {
        self.scan("count", prefix, false).await
    }

    /// Walks the keys under `prefix` with SCAN (never KEYS, which blocks Redis), unlinking
    /// them when `unlink`; returns how many there were (or were removed).
    async fn scan(&self, op: &'static str, prefix: &str, unlink: bool) -> Result<u64, CacheError> {
        let pattern = format!("{}*", escape_glob(prefix));
        self.run(op, ADMIN_TIMEOUT, |mut c| async move {
            let (mut cursor, mut n) = (0u64, 0u64);
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                n += match (unlink, keys.is_empty()) {
                    (true, false) => redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut c).await?,
                    _ => keys.len() as u64,
                };
                if next == 0 {
                    return Ok(n);
                }
                cursor = next;
            }
        })
        .await
    }
}

/// Escapes Redis glob metacharacters so a prefix matches literally.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped_and_passwords_hidden() {
        assert_eq!(escape_glob("luodi:cache:a*b?"), "luodi:cache:a\\*b\\?");
        assert_eq!(redact_url("redis://:secret@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
