//! luodi's interaction store: every answered request and the feedback people give on it, in a
//! SQLite file by default or PostgreSQL when replicas share one store. One code path for both
//! (sqlx `Any`, portable SQL with `$n` parameters); the schema is versioned by [`migrations`].
//!
//! What is stored is what the guard let through: pseudonyms and masks, never raw PII.

pub mod keys;
mod migrations;
mod model;
mod store;

pub use keys::{ActiveKey, KeyInfo, Role};
pub use model::{Feedback, Filter, GuardAction, Interaction, NewFeedback, Page};
pub use store::Store;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no interaction with request id `{0}`")]
    UnknownRequest(String),
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
