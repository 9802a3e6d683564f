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

/// sha256 of a whole key -> (key id, role), for keys already verified.
type Verified = HashMap<[u8; 32], (String, Role)>;

/// Keys from the store: active ones by id, and those already verified (by the sha256 of the
/// whole key, so argon2 runs once per key, not once per request).
#[derive(Clone, Default)]
pub struct KeyRing {
    active: Arc<RwLock<HashMap<String, (Role, String)>>>,
    verified: Arc<RwLock<Verified>>,
}

impl KeyRing {
    /// Loads the store's active keys now, then every `every` in the background.
    pub async fn start(store: luodi_store::Store, every: Duration) -> Result<KeyRing, luodi_store::StoreError> {
        let ring = KeyRing::default();
        ring.replace(store.active_keys().await?);
        let background = ring.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.active_keys().await {
                    Ok(keys) => background.replace(keys),
                    Err(e) => tracing::warn!(error = %e, "cannot re-read API keys; keeping the last set"),
                }
            }
        });
        Ok(ring)
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

    async fn role_of(&self, presented: &str) -> Option<Role> {
        let id = luodi_store::keys::key_id(presented)?.to_string();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let (role, hash) = self.active.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()?;
        if let Some((_, role)) = self.verified.read().unwrap_or_else(|e| e.into_inner()).get(&digest) {
            return Some(*role);
        }
        // argon2 is deliberately slow: off the async workers, once per key.
        let key = presented.to_string();
        let ok = tokio::task::spawn_blocking(move || luodi_store::keys::verify(&key, &hash)).await.unwrap_or(false);
        if !ok {
            return None;
        }
        self.verified.write().unwrap_or_else(|e| e.into_inner()).insert(digest, (id, role));
        Some(role)
    }
}

/// Accepted API keys; none at all means authentication is off.
#[derive(Clone, Default)]
pub struct ApiKeys {
    configured: Arc<Vec<Vec<u8>>>,
    ring: Option<KeyRing>,
}

impl ApiKeys {
    /// Keys from configuration; they have every right (admin).
    pub fn new(keys: Vec<String>) -> Self {
        ApiKeys { configured: Arc::new(keys.into_iter().map(String::into_bytes).collect()), ring: None }
    }

    pub fn with_ring(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    pub fn is_open(&self) -> bool {
        self.configured.is_empty() && self.ring.as_ref().is_none_or(KeyRing::is_empty)
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

/// Authenticates the bearer key and records its role on the request.
pub async fn require_key(State(keys): State<ApiKeys>, mut req: Request, next: Next) -> Response {
    if keys.is_open() {
        req.extensions_mut().insert(Role::Admin);
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let role = match presented {
        Some(key) if keys.configured_accepts(key.as_bytes()) => Some(Role::Admin),
        Some(key) => match &keys.ring {
            Some(ring) => ring.role_of(&key).await,
            None => None,
        },
        None => None,
    };
    match role {
        Some(role) => {
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        None => ApiError::unauthorized().into_response(),
    }
}

/// Lets through requests whose key has at least `min`.
pub async fn require_role(min: Role, req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(role) if *role >= min => next.run(req).await,
        Some(role) => ApiError::forbidden(*role, min).into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}
