//! Assembling a server from settings (ripgrep's `HiArgs` idea: everything derived from the
//! configuration is decided here, once, and tested in-process): the interaction store (or its
//! background connection), the API keys and the "no keys -> loopback only" rule, the
//! recorder, retention, and the router. The caller brings what generates: a [`Backend`], an
//! optional [`Embedder`], the guard and the model version.

use crate::app::{router, ApiKeys};
use crate::auth::KeyRing;
use crate::backend::{Backend, Embedder};
use crate::config::ServerConfig;
use crate::guarding::Guarding;
use crate::recorder::{Recorder, RecorderConfig};
use crate::state::AppState;
use crate::store_link::{Backoff, StoreLink};
use luodi_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// The model side of a server.
pub struct Parts {
    pub backend: Arc<dyn Backend>,
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Whether `/generate` wraps prompts in the model's chat template.
    pub chat_template: bool,
    /// Part of every cache key (`name@sha256`).
    pub model_version: String,
    pub guard: Guarding,
    pub cache: Option<Arc<luodi_cache::ResponseCache>>,
}

/// A server ready to run: its router, the settings it runs with (the address may have been
/// narrowed to loopback), and the recorder to flush on shutdown.
pub struct Built {
    pub router: axum::Router,
    pub config: ServerConfig,
    pub recorder: Option<Recorder>,
    pub auth: Auth,
}

/// How the API is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No key anywhere: open, and bound to loopback only.
    OpenOnLoopback,
    /// Keys from configuration and/or the store.
    Keys,
    /// The store is still connecting: its keys are not known yet (503 for them meanwhile).
    KeysPending,
}

/// Builds the server. `default_store` is the store URL when `[store] url` is unset.
pub async fn build(mut config: ServerConfig, parts: Parts, default_store: &str) -> Result<Built, String> {
    config.connection_limits()?;
    let keys = config.load_keys()?;
    let mut ring = None;
    let recorder = if config.store.enabled {
        let url = config.store.url.clone().unwrap_or_else(|| default_store.to_string());
        let link = connect_store(url, config.store.table_prefix.clone()).await?;
        let keys = KeyRing::linked(link.clone(), Duration::from_secs(5));
        keys.refresh().await.map_err(|e| format!("reading API keys from the store: {e}"))?;
        ring = Some(keys);
        spawn_retention(link.clone(), config.store.retention_days);
        let settings = RecorderConfig {
            buffer: config.store.buffer,
            batch: config.store.batch,
            flush_interval: Duration::from_millis(config.store.flush_ms),
        };
        Some(Recorder::linked(link, settings))
    } else {
        None
    };
    let mut api_keys = ApiKeys::new(keys);
    if let Some(ring) = ring {
        api_keys = api_keys.with_ring(ring);
    }
    let auth = if api_keys.is_open() {
        // Without any key, only this machine may call the API.
        if !is_loopback(&config.host) {
            tracing::warn!(requested = %config.host, "no API keys configured: binding to 127.0.0.1 only (create one with `luodi keys create`)");
            config.host = "127.0.0.1".into();
        } else {
            tracing::warn!("no API keys configured: serving on loopback only, without authentication");
        }
        Auth::OpenOnLoopback
    } else if api_keys.keys_pending() {
        // Keys may exist in the store: the address is kept, and the API stays closed there
        // until a key exists.
        tracing::warn!("API keys in the store are not known yet: requests get 503 until it is connected");
        Auth::KeysPending
    } else {
        Auth::Keys
    };
    let api_keys = api_keys.open_only_on_loopback(is_loopback(&config.host));
    let state = AppState {
        backend: parts.backend,
        embedder: parts.embedder,
        config: Arc::new(config.clone()),
        metrics: crate::metrics_handle(),
        chat_template: parts.chat_template,
        guard: parts.guard,
        cache: parts.cache,
        model_version: parts.model_version,
        recorder: recorder.clone(),
    };
    Ok(Built { router: router(state, api_keys), config, recorder, auth })
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// Opens the store; one that cannot be reached within a few seconds is connected in the
/// background instead (the server serves meanwhile). A malformed setting stays an error.
async fn connect_store(url: String, prefix: String) -> Result<StoreLink, String> {
    let shown = url.split('@').next_back().unwrap_or(&url).to_string();
    let first = tokio::time::timeout(Duration::from_secs(5), Store::open(&url, &prefix)).await;
    let error = match first {
        Ok(Ok(db)) => {
            tracing::info!(backend = db.backend(), "recording interactions");
            return Ok(StoreLink::ready(db));
        }
        Ok(Err(e @ StoreError::Invalid { .. })) => return Err(format!("opening the interaction store {shown}: {e}")),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5 s".to_string(),
    };
    tracing::warn!(store = %shown, error, "interaction store unreachable at start-up: serving anyway, connecting in the background; records are buffered (and dropped past store.buffer)");
    Ok(StoreLink::connect(shown, Backoff::default(), move || {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { Store::open(&url, &prefix).await }
    }))
}

/// Deletes interactions past the retention period, hourly, once the store is connected.
fn spawn_retention(link: StoreLink, days: u32) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let db = link.connected().await;
        loop {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            match db.purge_before(now - i64::from(days) * 86_400_000).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, days, "retention: old interactions deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}
