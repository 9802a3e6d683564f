//! Who may call what. Keys come from configuration (`api_keys`, full rights) and from the
//! store (`luodi keys create`: argon2 hashes with a role, re-read every few seconds so a
//! revocation takes effect without a restart). With no key anywhere, authentication is off
//! (and the server binds to loopback only).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use luodi_store::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Who is calling, put into every authenticated request by [`require_key`]. `key_id` is what
/// interactions record and feedback names as its reviewer: for a stored key the id that
/// `luodi keys list` shows, for a configured key `config-<sha256 prefix>` (the key itself is
/// never kept), `None` when the server has no keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: Option<String>,
    pub role: Role,
}

/// The key of an `Authorization: Bearer KEY` header: the one place it is parsed.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The id recorded for a configured key (a hash prefix: the key itself is never stored).
fn configured_key_id(key: &str) -> String {
    format!("config-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..12])
}

/// sha256 of a whole key -> (key id, role), for keys already verified.
type Verified = HashMap<[u8; 32], (String, Role)>;

/// Keys from the store: active ones by id, and those already verified (by the sha256 of the
/// whole key, so argon2 runs once per key, not once per request).
#[derive(Clone, Default)]
pub struct KeyRing {
    active: Arc<RwLock<HashMap<String, (Role, String)>>>,
    verified: Arc<RwLock<Verified>>,
    link: Option<crate::store_link::StoreLink>,
    /// Whether the store's keys have been read at least once (until then no stored key is
    /// known, so none is refused as wrong: the answer is 503, retry).
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl KeyRing {
    /// Loads the store's active keys now, then every `every` in the background.
    pub async fn start(store: luodi_store::Store, every: Duration) -> Result<KeyRing, luodi_store::StoreError> {
        let ring = KeyRing::linked(crate::store_link::StoreLink::ready(store), every);
        ring.refresh().await?;
        Ok(ring)
    }

    /// Reads the keys once the store is connected, then every `every`.
    pub fn linked(link: crate::store_link::StoreLink, every: Duration) -> KeyRing {
        let ring = KeyRing { link: Some(link.clone()), ..KeyRing::default() };
        let background = ring.clone();
        tokio::spawn(async move {
            link.connected().await;
            loop {
                // A ring the caller already loaded (at start-up) is not read again at once.
                if background.is_loaded() {
                    tokio::time::sleep(every).await;
                }
                if let Err(e) = background.refresh().await {
                    tracing::warn!(error = %e, "cannot re-read API keys; keeping the last set");
                }
            }
        });
        ring
    }

    /// Re-reads the store's active keys now (the background task does this every few
    /// seconds; tests and `luodi keys revoke` on the same process need not wait for it).
    pub async fn refresh(&self) -> Result<(), luodi_store::StoreError> {
        if let Some(store) = self.link.as_ref().and_then(|l| l.get()) {
            self.replace(store.active_keys().await?);
            self.loaded.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn replace(&self, keys: Vec<luodi_store::ActiveKey>) {
        let map: HashMap<_, _> = keys.into_iter().map(|k| (k.id, (k.role, k.hash))).collect();
        // Forget verifications of keys that are gone (revoked).
        self.verified.write().unwrap_or_else(|e| e.into_inner()).retain(|_, (id, _)| map.contains_key(id));
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    pub fn is_empty(&self) -> bool {
        self.active.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The key's id and role, if it is an active stored key.
    async fn caller(&self, presented: &str) -> Option<Caller> {
        let id = luodi_store::keys::key_id(presented)?.to_string();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let (role, hash) = self.active.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()?;
        if let Some((id, role)) = self.verified.read().unwrap_or_else(|e| e.into_inner()).get(&digest) {
            return Some(Caller { key_id: Some(id.clone()), role: *role });
        }
        // argon2 is deliberately slow: off the async workers, once per key.
        let key = presented.to_string();
        let ok = tokio::task::spawn_blocking(move || luodi_store::keys::verify(&key, &hash)).await.unwrap_or(false);
        if !ok {
            return None;
        }
        self.verified.write().unwrap_or_else(|e| e.into_inner()).insert(digest, (id.clone(), role));
        Some(Caller { key_id: Some(id), role })
    }
}

/// Accepted API keys; none at all means authentication is off.
#[derive(Clone)]
pub struct ApiKeys {
    configured: Arc<Vec<Vec<u8>>>,
    ring: Option<KeyRing>,
    /// Whether the API may be open when no key exists (only on a loopback address).
    open_allowed: bool,
}

impl Default for ApiKeys {
    /// No keys: open (for a server on loopback).
    fn default() -> Self {
        ApiKeys::new(vec![])
    }
}

impl ApiKeys {
    /// Keys from configuration; they have every right (admin).
    pub fn new(keys: Vec<String>) -> Self {
        ApiKeys {
            configured: Arc::new(keys.into_iter().map(String::into_bytes).collect()),
            ring: None,
            open_allowed: true,
        }
    }

    pub fn with_ring(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    /// Never open without keys on a non-loopback address (the CLI binds to loopback when it
    /// knows at start-up that no key exists; when the store is not reachable yet it cannot
    /// know, keeps the address, and the API stays closed until a key exists).
    pub fn open_only_on_loopback(mut self, loopback: bool) -> Self {
        self.open_allowed = loopback;
        self
    }

    pub fn is_open(&self) -> bool {
        self.open_allowed
            && self.configured.is_empty()
            && self.ring.as_ref().is_none_or(|r| r.is_loaded() && r.is_empty())
    }

    /// True while stored keys may exist but have not been read yet.
    pub fn keys_pending(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| !r.is_loaded())
    }

    /// Compares against every configured key in constant time, so timing reveals neither
    /// which key nor how much of one matched.
    fn configured_accepts(&self, presented: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for key in self.configured.iter() {
            ok |= key.as_slice().ct_eq(presented);
        }
        ok.into()
    }
}

/// Authenticates the bearer key and puts the [`Caller`] into the request.
pub async fn require_key(State(keys): State<ApiKeys>, mut req: Request, next: Next) -> Response {
    if keys.is_open() {
        req.extensions_mut().insert(Caller { key_id: None, role: Role::Admin });
        return next.run(req).await;
    }
    let presented = bearer(req.headers()).map(str::to_string);
    let caller = match presented {
        Some(key) if keys.configured_accepts(key.as_bytes()) => {
            Some(Caller { key_id: Some(configured_key_id(&key)), role: Role::Admin })
        }
        Some(key) => match &keys.ring {
            Some(ring) => ring.caller(&key).await,
            None => None,
        },
        None => None,
    };
    match caller {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None if keys.keys_pending() => {
            ApiError::store_unavailable("API key store", "the interaction store is not connected yet").into_response()
        }
        None => ApiError::unauthorized().into_response(),
    }
}

/// Lets through requests whose key has at least `min`.
pub async fn require_role(min: Role, req: Request, next: Next) -> Response {
    match req.extensions().get::<Caller>() {
        Some(caller) if caller.role >= min => next.run(req).await,
        Some(caller) => ApiError::forbidden(caller.role, min).into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}
