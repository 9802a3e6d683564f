//! luodi's own engine behind the server's backend seam (`luodi_server::backend`): the
//! continuous batching worker ([`EngineBackend`]), the sentence embedder ([`EngineEmbedder`]),
//! and the translation between the server's request, event and error types and the
//! engine's. The server knows nothing of the engine; the CLI wires the two together.

mod convert;
mod embedder;
mod worker;

pub use convert::batch_config;
pub use embedder::EngineEmbedder;
pub use worker::EngineBackend;
