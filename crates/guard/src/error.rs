//! Configuration errors. Each names the setting at fault (entity, field or lexicon category).

use std::path::PathBuf;

use crate::pii::EntityType;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("guard.pii.{field}: {message}")]
    Pii { field: &'static str, message: String },

    #[error("guard.pii.entities.{entity}: {message}")]
    Entity { entity: EntityType, message: String },

    #[error("guard lexicon `{category}`: cannot read {}: {source}", path.display())]
    LexiconRead {
        category: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("guard lexicon `{category}`: {message}")]
    Lexicon { category: String, message: String },
}
