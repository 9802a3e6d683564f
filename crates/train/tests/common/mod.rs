//! What the trainer's integration tests share: where the bundled models are.

use std::path::PathBuf;

/// A fetched catalog model's file, or a failure that says which command fetches it.
pub fn model_path(name: &str, file: &str) -> PathBuf {
    let path = luodi_models::luodi_home().join("models").join(name).join(file);
    assert!(path.is_file(), "{} is missing: run `luodi models fetch {name}` (or scripts/test)", path.display());
    path
}
