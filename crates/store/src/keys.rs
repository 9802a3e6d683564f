//! API keys: generated here, shown once, stored only as argon2 hashes with a role.
//!
//! A key reads `ld_<id>_<secret>`: the id (8 hex characters) finds the row without scanning
//! hashes; the secret (256 random bits) is what the hash protects.

use crate::store::Store;
use crate::StoreError;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sqlx::Row;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Inference only.
    Client,
    /// Inference, the review console, feedback and interactions.
    Reviewer,
    /// Everything: keys, cache purge, export.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "client" => Ok(Role::Client),
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`; expected client, reviewer or admin")),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// An active key as the server checks it.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: String,
    pub role: Role,
    /// argon2 PHC string.
    pub hash: String,
}

/// The id part of a presented key, if it has luodi's shape.
pub fn key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix("ld_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() >= 32).then_some(id)
}

/// Whether `presented` matches the argon2 `hash` (constant-time inside argon2).
pub fn verify(presented: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(presented.as_bytes(), &h).is_ok())
}

impl Store {
    /// Creates a key; returns it in full (the only time it exists outside the caller).
    pub async fn create_key(&self, name: &str, role: Role) -> Result<(KeyInfo, String), StoreError> {
        if name.trim().is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid { field: "name", message: "must be 1-100 characters".into() });
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let key = format!("ld_{id}_{secret}");
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(key.as_bytes(), &salt)
            .map_err(|e| StoreError::Invalid { field: "key", message: e.to_string() })?
            .to_string();
        let created_ms = crate::store::now_ms();
        sqlx::query(&self.sql(
            "INSERT INTO {p}api_keys (id, name, role, hash, created_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5, NULL)",
        ))
        .bind(&id)
        .bind(name.trim())
        .bind(role.as_str())
        .bind(&hash)
        .bind(created_ms)
        .execute(self.pool())
        .await?;
        Ok((KeyInfo { id, name: name.trim().to_string(), role, created_ms, revoked_ms: None }, key))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            &self.sql("SELECT id, name, role, created_ms, revoked_ms FROM {p}api_keys ORDER BY created_ms, id"),
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok(KeyInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    role: role.parse().unwrap_or(Role::Client),
                    created_ms: r.try_get("created_ms")?,
                    revoked_ms: r.try_get("revoked_ms")?,
                })
            })
            .collect()
    }

    /// Revokes a key by id; false when no active key has it.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(&self.sql("UPDATE {p}api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL"))
            .bind(crate::store::now_ms())
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub async fn active_keys(&self) -> Result<Vec<ActiveKey>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT id, role, hash FROM {p}api_keys WHERE revoked_ms IS NULL"))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok(ActiveKey {
                    id: r.try_get("id")?,
                    role: role.parse().unwrap_or(Role::Client),
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }
}
