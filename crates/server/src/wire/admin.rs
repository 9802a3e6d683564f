//! `/admin/cache/*` bodies. The purge body refuses unknown fields: a misspelt field must not
//! purge everything.

use super::rules::Rules;
use super::Request;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `{"model_version": "..."}` for one version's cached answers, `{}` for all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// e.g. `smollm2-135m@<sha256>`, as `/admin/cache/stats` shows.
    pub model_version: Option<String>,
}

const PURGE_RULES: Rules = Rules {
    bounds: &[],
    expected: &[("model_version", "a non-empty string, e.g. the one /admin/cache/stats shows")],
    refused: &[],
};

impl Request for PurgeRequest {
    const RULES: &'static [&'static Rules] = &[&PURGE_RULES];
}

impl PurgeRequest {
    pub fn validate(self) -> Result<Option<String>, ApiError> {
        match self.model_version {
            Some(v) if v.is_empty() => Err(ApiError::invalid(
                "model_version",
                "`model_version` must be a non-empty string, e.g. the one /admin/cache/stats shows",
            )),
            other => Ok(other),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PurgeResult<'a> {
    /// False when the server has no response cache (then nothing is removed).
    pub enabled: bool,
    pub removed: u64,
    /// The version purged; null for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<Option<&'a str>>,
}

/// The cache's store (`memory` or `redis`), mode, entries, bytes and bounds.
#[derive(Serialize, ToSchema)]
pub struct CacheStats<'a> {
    /// False when the server has no response cache (and nothing else is reported).
    pub enabled: bool,
    /// The model version this server's answers are cached under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<&'a str>,
    /// The store's figures.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub stats: Value,
}
