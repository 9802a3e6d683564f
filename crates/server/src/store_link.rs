//! The server's link to the interaction store, which may not be reachable when the server
//! starts. A store that is down must not stop serving: in a rollout that would be a crash loop
//! whenever the database blinks. So the link connects in the background with backoff while
//! the server answers; until then records wait in the recorder's bounded buffer (and are
//! dropped and counted past it, as during an outage), stored API keys are not known yet, and
//! `/ready` and `luodi_store_connected` say so.

use luodi_store::{Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A handle on the store, connected or still connecting. Cheap to clone.
#[derive(Clone)]
pub struct StoreLink {
    store: watch::Receiver<Option<Store>>,
    /// Keeps the channel open for handles made by [`StoreLink::ready`].
    _sender: Arc<watch::Sender<Option<Store>>>,
}

/// Delays between connection attempts: doubling from `first` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl StoreLink {
    /// A link to a store already open.
    pub fn ready(store: Store) -> StoreLink {
        metrics::gauge!("luodi_store_connected").set(1.0);
        let (tx, rx) = watch::channel(Some(store));
        StoreLink { store: rx, _sender: Arc::new(tx) }
    }

    /// Connects in the background: `open` is tried until it succeeds, with backoff between
    /// attempts; each failure is logged (`what` names the store without its credentials).
    pub fn connect<F, Fut>(what: String, backoff: Backoff, open: F) -> StoreLink
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Store, StoreError>> + Send,
    {
        metrics::gauge!("luodi_store_connected").set(0.0);
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        let sender = tx.clone();
        tokio::spawn(async move {
            let mut delay = backoff.first;
            for attempt in 1u64.. {
                match open().await {
                    Ok(store) => {
                        tracing::info!(store = %what, attempt, "interaction store connected");
                        metrics::gauge!("luodi_store_connected").set(1.0);
                        let _ = sender.send(Some(store));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(store = %what, attempt, error = %e, retry_s = delay.as_secs_f64(), "interaction store unreachable; serving without it and retrying");
                        metrics::counter!("luodi_store_connect_failures_total").increment(1);
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
            }
        });
        StoreLink { store: rx, _sender: tx }
    }

    /// The store, if connected.
    pub fn get(&self) -> Option<Store> {
        self.store.borrow().clone()
    }

    /// Waits until the store is connected.
    pub async fn connected(&self) -> Store {
        let mut rx = self.store.clone();
        let store = rx.wait_for(Option::is_some).await.map(|s| s.clone());
        match store {
            Ok(Some(store)) => store,
            // The sender lives as long as any link: unreachable, but never a panic.
            _ => std::future::pending().await,
        }
    }

    /// `connected` or `connecting`, for `/ready`.
    pub fn state(&self) -> &'static str {
        if self.store.borrow().is_some() {
            "connected"
        } else {
            "connecting"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn retries_until_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let backoff = Backoff { first: Duration::from_millis(1), max: Duration::from_millis(4) };
        let link = StoreLink::connect("test".into(), backoff, move || {
            let (url, n) = (url.clone(), counted.fetch_add(1, Ordering::SeqCst));
            async move {
                if n < 3 {
                    Err(StoreError::Invalid { field: "store.url", message: "down".into() })
                } else {
                    Store::open(&url, "luodi_").await
                }
            }
        });
        let store = link.connected().await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4, "three failures, then the open");
        assert_eq!(link.state(), "connected");
        assert!(link.get().is_some());
        assert!(store.active_keys().await.unwrap().is_empty());
    }
}
