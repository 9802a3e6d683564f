//! `hf:owner/repo/path/file.gguf` specs: GGUF files fetched from the Hugging Face Hub through
//! the `hf-hub` crate, for machines that can reach the Hub.
//!
//! Files land in hf-hub's own cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), so
//! they are shared with other Hugging Face tools and never duplicated under `$LUODI_HOME`.
//! The cache is consulted first, so a file downloaded once also works offline.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::ModelError;
use crate::verify::check_gguf_magic;

/// The prefix that marks a Hugging Face spec.
pub const HF_PREFIX: &str = "hf:";

/// A parsed `hf:owner/repo[@revision]/path/to/file.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSpec {
    /// `owner/repo`.
    pub repo: String,
    /// A branch, tag or commit; `None` means the Hub's default branch (`main`).
    pub revision: Option<String>,
    /// The file's path inside the repository.
    pub file: String,
}

impl HfSpec {
    /// Parses a spec with or without the `hf:` prefix.
    pub fn parse(spec: &str) -> Result<HfSpec, ModelError> {
        let bad = |reason: &str| ModelError::BadHfSpec { spec: spec.to_string(), reason: reason.to_string() };
        let rest = spec.strip_prefix(HF_PREFIX).unwrap_or(spec);
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() < 3 {
            return Err(bad("it needs an owner, a repository and a file path"));
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(bad("it has an empty path segment"));
        }
        // `..` would let a spec climb out of the repository inside hf-hub's cache.
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(bad("`.` and `..` are not allowed in the path"));
        }
        let owner = segments[0];
        let (repo_name, revision) = match segments[1].split_once('@') {
            Some((_, "")) => return Err(bad("the revision after `@` is empty")),
            Some((name, rev)) => (name, Some(rev.to_string())),
            None => (segments[1], None),
        };
        if owner.contains('@') || repo_name.is_empty() {
            return Err(bad("the owner/repo part is malformed"));
        }
        let file = segments[2..].join("/");
        if !file.ends_with(".gguf") {
            return Err(bad("only GGUF files can be used (the file must end in .gguf)"));
        }
        Ok(HfSpec { repo: format!("{owner}/{repo_name}"), revision, file })
    }

    fn hf_repo(&self) -> Repo {
        match &self.revision {
            Some(rev) => Repo::with_revision(self.repo.clone(), RepoType::Model, rev.clone()),
            None => Repo::model(self.repo.clone()),
        }
    }

    /// The file's stem, used as the model's display name.
    pub fn display_name(&self) -> String {
        let base = self.file.rsplit('/').next().unwrap_or(&self.file);
        base.strip_suffix(".gguf").unwrap_or(base).to_string()
    }
}

/// The local path of the spec's file: from hf-hub's cache if there, else downloaded (unless
/// `offline`). The file must be GGUF.
pub(crate) fn fetch(spec: &str, offline: bool, quiet: bool) -> Result<PathBuf, ModelError> {
    let parsed = HfSpec::parse(spec)?;
    let cached = Cache::from_env().repo(parsed.hf_repo()).get(&parsed.file);
    let path = match cached {
        Some(path) => path,
        None if offline => return Err(ModelError::HfOffline { spec: spec.to_string() }),
        None => {
            let hf_err =
                |e: hf_hub::api::sync::ApiError| ModelError::Hf { spec: spec.to_string(), message: e.to_string() };
            let api = ApiBuilder::from_env().with_progress(!quiet).build().map_err(hf_err)?;
            api.repo(parsed.hf_repo()).get(&parsed.file).map_err(hf_err)?
        }
    };
    check_gguf_magic(&path, None)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let s = HfSpec::parse("hf:bartowski/SmolLM2-GGUF/q4/SmolLM2.Q4_0.gguf").unwrap();
        assert_eq!(s.repo, "bartowski/SmolLM2-GGUF");
        assert_eq!(s.revision, None);
        assert_eq!(s.file, "q4/SmolLM2.Q4_0.gguf");
        assert_eq!(s.display_name(), "SmolLM2.Q4_0");
        let s = HfSpec::parse("hf:o/r@v1.0/f.gguf").unwrap();
        assert_eq!((s.repo.as_str(), s.revision.as_deref()), ("o/r", Some("v1.0")));
    }

    #[test]
    fn rejects_malformed_specs() {
        for spec in [
            "hf:",
            "hf:owner",
            "hf:owner/repo",
            "hf:owner/repo/",
            "hf:owner//file.gguf",
            "hf:/repo/file.gguf",
            "hf:owner/repo@/file.gguf",
            "hf:owner/repo/../x.gguf",
            "hf:owner/repo/model.safetensors",
        ] {
            let err = HfSpec::parse(spec).unwrap_err();
            assert!(matches!(err, ModelError::BadHfSpec { .. }), "{spec}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("hf:owner/repo/path/to/file.gguf"), "{msg}");
        }
    }
}
