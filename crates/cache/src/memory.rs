//! The embedded store: moka, bounded by bytes and by entries, with a TTL.

use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Arc<[u8]>>,
}

impl MemoryStore {
    /// `max_bytes` bounds keys plus values. `max_entries` is enforced through the weigher: every
    /// entry weighs at least `max_bytes / max_entries`, so no more than `max_entries` fit.
    /// Eviction is moka's TinyLFU (frequency-aware LRU), which suits skewed FAQ traffic.
    pub fn new(max_entries: u64, max_bytes: u64, ttl: Duration) -> MemoryStore {
        let floor = (max_bytes / max_entries.max(1)).max(1);
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |k: &String, v: &Arc<[u8]>| {
                let bytes = (k.len() + v.len()) as u64;
                bytes.max(floor).min(u64::from(u32::MAX)) as u32
            })
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        MemoryStore { cache }
    }

    pub async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        self.cache.get(key).await
    }

    pub async fn put(&self, key: String, value: Vec<u8>) {
        self.cache.insert(key, value.into()).await;
    }

    /// Drops every entry whose key starts with `prefix` (all entries for `""`).
    pub async fn purge(&self, prefix: &str) {
        if prefix.is_empty() {
            self.cache.invalidate_all();
        } else {
            let prefix = prefix.to_string();
            // Only fails without support_invalidation_closures, which the builder sets.
            let _ = self.cache.invalidate_entries_if(move |k, _| k.starts_with(&prefix));
        }
        self.cache.run_pending_tasks().await;
    }

    /// Entries and weighted bytes (after pending evictions are applied).
    pub async fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_entries_and_bytes() {
        let store = MemoryStore::new(10, 10_000, Duration::from_secs(60));
        for i in 0..100 {
            store.put(format!("k{i}"), vec![0; 10]).await;
        }
        let (entries, _) = store.usage().await;
        assert!(entries <= 10, "{entries} entries");
        let store = MemoryStore::new(1000, 10_000, Duration::from_secs(60));
        for i in 0..100 {
            store.put(format!("k{i}"), vec![0; 1000]).await;
        }
        let (entries, bytes) = store.usage().await;
        assert!(bytes <= 10_000 && entries <= 10, "{entries} entries, {bytes} bytes");
    }

    #[tokio::test]
    async fn ttl_expires_and_purge_by_prefix() {
        let store = MemoryStore::new(100, 1 << 20, Duration::from_millis(50));
        store.put("a:1".into(), b"x".to_vec()).await;
        assert!(store.get("a:1").await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.get("a:1").await.is_none(), "expired");

        let store = MemoryStore::new(100, 1 << 20, Duration::from_secs(60));
        store.put("a:1".into(), b"x".to_vec()).await;
        store.put("b:1".into(), b"y".to_vec()).await;
        store.purge("a:").await;
        assert!(store.get("a:1").await.is_none());
        assert_eq!(store.get("b:1").await.as_deref(), Some(&b"y"[..]));
        store.purge("").await;
        assert!(store.get("b:1").await.is_none());
    }
}
