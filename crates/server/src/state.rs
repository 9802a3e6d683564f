//! What every handler can reach.

use crate::backend::{Backend, Embedder};
use crate::config::ServerConfig;
use crate::guarding::Guarding;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    /// `None` when no embedding model is configured (then `/v1/embeddings` is a 404).
    pub embedder: Option<Arc<dyn Embedder>>,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    /// Whether `/generate` wraps prompts in the model's chat template.
    pub chat_template: bool,
    /// The guard and answer styles, built from the config at startup.
    pub guard: Guarding,
    /// The response cache; `None` when `cache.mode = "off"`.
    pub cache: Option<Arc<luodi_cache::ResponseCache>>,
    /// `model@sha256` of the served file (plus adapters, later): part of every cache key, so a
    /// new model version never sees the old one's answers.
    pub model_version: String,
    /// Writes answered requests to the interaction store; `None` without a store.
    pub recorder: Option<crate::recorder::Recorder>,
}
