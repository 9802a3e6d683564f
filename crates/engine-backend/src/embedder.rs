//! all-MiniLM-L6-v2 (luodi's BERT encoder) behind the server's `Embedder` seam.

use luodi_engine::embedding::EmbeddingModel;
use luodi_server::backend::{BackendError, Embedder};

pub struct EngineEmbedder {
    id: String,
    model: EmbeddingModel,
}

impl EngineEmbedder {
    /// `id` is the name clients pass as `model`.
    pub fn new(id: String, model: EmbeddingModel) -> Self {
        EngineEmbedder { id, model }
    }
}

impl Embedder for EngineEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn max_tokens(&self) -> usize {
        self.model.max_tokens()
    }

    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError> {
        let out = self.model.embed(inputs).map_err(crate::convert::error)?;
        Ok((out.vectors, out.token_counts))
    }
}
