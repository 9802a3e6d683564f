//! The vocabulary as llama.cpp sees it: token strings, scores, per-token attributes, special
//! ids and flags, read from the GGUF `tokenizer.ggml.*` keys.
//!
//! llama.cpp adjusts the GGUF data while loading (it marks end-of-generation tokens as
//! control tokens, renames empty tokens, picks defaults per tokenizer type); those
//! adjustments live here so that every later stage sees the same vocabulary llama.cpp does.

use std::collections::HashMap;

use crate::error::{EngineError, Result};
use crate::gguf::{value_as_f64, value_as_i64, Metadata};

/// Which llama.cpp tokenizer family the GGUF asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with ranked merges.
    Bpe,
    /// `tokenizer.ggml.model = "llama"`: SentencePiece, highest-score bigram merging.
    Spm,
}

/// llama.cpp's token attributes (a bit set, because llama.cpp ORs CONTROL onto tokens it
/// recognises as end-of-generation markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Attr(u8);

impl Attr {
    pub const NORMAL: Attr = Attr(1);
    pub const UNKNOWN: Attr = Attr(2);
    pub const CONTROL: Attr = Attr(4);
    pub const USER_DEFINED: Attr = Attr(8);
    pub const UNUSED: Attr = Attr(16);
    pub const BYTE: Attr = Attr(32);

    /// GGUF `token_type` values: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused,
    /// 6 byte; anything else is "undefined" (no attribute bit).
    pub fn from_token_type(t: i64) -> Attr {
        match t {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr(0),
        }
    }

    pub fn has(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, other: Attr) -> Attr {
        Attr(self.0 | other.0)
    }
}

/// Everything the encoders and decoders need to know about the vocabulary.
pub(crate) struct Vocab {
    pub kind: Kind,
    /// `tokenizer.ggml.pre` (empty when absent).
    pub pre: String,
    pub tokens: Vec<String>,
    pub attrs: Vec<Attr>,
    /// Per-token scores; all zero when the GGUF has none (BPE vocabularies usually don't).
    pub scores: Vec<f32>,
    /// BPE merges in rank order (empty for SPM).
    pub merges: Vec<(String, String)>,
    pub ids: HashMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_space_prefix: bool,
    /// End-of-generation ids, sorted.
    pub eog: Vec<u32>,
}

/// `tokenizer.pre` values for which llama.cpp turns on BOS by default (the llama3 family).
const PRE_WITH_BOS: &[&str] =
    &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "tekken", "chameleon"];

/// Token texts llama.cpp treats as end-of-generation markers (llama-vocab.cpp, `load`).
/// This includes `</s>`, which in Gemma 3 is the HTML strike-through closing tag; llama.cpp
/// stops on it (and, since that makes it a control token, no longer splits it out of text
/// unless asked to parse special tokens), and so do we, to stay token-for-token equal.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// End-of-turn texts, used when the GGUF has no `eot_token_id`.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle pad / repo / file-separator tokens: llama.cpp stops on these too.
const FIM_EOG_TEXTS: &[&[&str]] = &[
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    &["<|file_sep|>"],
];

const FIM_EOG_KEYS: &[&str] =
    &["tokenizer.ggml.fim_pad_token_id", "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id"];

impl Vocab {
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let model = meta.string("tokenizer.ggml.model")?;
        let kind = match model {
            "gpt2" => Kind::Bpe,
            "llama" => Kind::Spm,
            other => return Err(EngineError::UnsupportedTokenizer(other.to_string())),
        };
        let pre = meta.opt_string("tokenizer.ggml.pre").unwrap_or("").to_string();

        let raw_tokens = meta.string_array("tokenizer.ggml.tokens")?;
        let n = raw_tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(EngineError::Tokenizer(format!("vocabulary has {n} tokens")));
        }

        let mut tokens = Vec::with_capacity(n);
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in raw_tokens.iter().enumerate() {
            // llama.cpp renames empty tokens so that every id has a distinct, non-empty text.
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { t.to_string() };
            if let Some(prev) = ids.insert(text.clone(), i as u32) {
                return Err(EngineError::Tokenizer(format!(
                    "duplicate token {text:?} in vocabulary (ids {prev} and {i})"
                )));
            }
            tokens.push(text);
        }

        let mut attrs = match meta.opt_array("tokenizer.ggml.token_type") {
            Some(types) => {
                if types.len() < n {
                    return Err(EngineError::Tokenizer(format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        types.len()
                    )));
                }
                types[..n].iter().map(|v| Attr::from_token_type(value_as_i64(v).unwrap_or(0))).collect()
            }
            None => vec![Attr::NORMAL; n],
        };

        let scores = match meta.opt_array("tokenizer.ggml.scores") {
            Some(s) => {
                if s.len() < n {
                    return Err(EngineError::Tokenizer(format!(
                        "tokenizer.ggml.scores has {} entries for {n} tokens",
                        s.len()
                    )));
                }
                s[..n].iter().map(|v| value_as_f64(v).unwrap_or(0.0) as f32).collect()
            }
            None => vec![0.0; n],
        };

        let merges = match kind {
            Kind::Bpe => {
                meta.string_array("tokenizer.ggml.merges")?.into_iter().map(split_merge).collect::<Result<Vec<_>>>()?
            }
            Kind::Spm => Vec::new(),
        };

        let special = |key: &str| -> Result<Option<u32>> {
            // llama.cpp ignores out-of-range special ids (with a warning) rather than failing.
            Ok(meta.opt_usize(key)?.filter(|&id| id < n).map(|id| id as u32))
        };
        let bos = special("tokenizer.ggml.bos_token_id")?;
        let eos = special("tokenizer.ggml.eos_token_id")?;
        let unk = special("tokenizer.ggml.unknown_token_id")?;
        let mut eot = special("tokenizer.ggml.eot_token_id")?;
        let mut eom = special("tokenizer.ggml.eom_token_id")?;

        let default_add_bos = kind == Kind::Spm || PRE_WITH_BOS.contains(&pre.as_str());
        let add_bos = meta.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
        if add_bos && bos.is_none() {
            return Err(EngineError::MissingMetadata { key: "tokenizer.ggml.bos_token_id".into() });
        }
        let add_space_prefix = meta.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(kind == Kind::Spm);

        // End-of-turn / end-of-message ids by name when the GGUF does not give them; like
        // llama.cpp, a marker found this way becomes a control token.
        let find = |names: &[&str]| names.iter().find_map(|t| ids.get(*t).copied());
        if eot.is_none() {
            eot = find(EOT_TEXTS);
        }
        if eom.is_none() {
            eom = find(&["<|eom_id|>"]);
        }

        let mut eog: Vec<u32> = Vec::new();
        for (names, key) in FIM_EOG_TEXTS.iter().zip(FIM_EOG_KEYS) {
            if let Some(id) = special(key)?.or_else(|| find(names)) {
                eog.push(id);
            }
        }
        eog.extend(EOG_TEXTS.iter().filter_map(|t| ids.get(*t).copied()));
        // gpt-oss / solar-open: `<|end|>` ends a message, not the generation.
        let has = |t: &str| ids.get(t).is_some_and(|id| eog.contains(id));
        if (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")) {
            if let Some(end) = ids.get("<|end|>") {
                eog.retain(|id| id != end);
            }
        }
        // Gemma 4 / PaddleOCR: there `</s>` is ordinary text.
        if ids.get("<|tool_response>").is_some_and(|id| eog.contains(id)) {
            if let Some(s) = ids.get("</s>") {
                eog.retain(|id| id != s);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        for &id in eog.iter().chain(eot.iter()).chain(eom.iter()) {
            let a = &mut attrs[id as usize];
            *a = a.with(Attr::CONTROL);
        }

        Ok(Vocab { kind, pre, tokens, attrs, scores, merges, ids, bos, eos, unk, add_bos, add_space_prefix, eog })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn attr(&self, id: u32) -> Attr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }
}

/// A GGUF merge is "left right"; llama.cpp splits at the first space after the first byte so
/// that a left part which is itself a space still works.
fn split_merge(m: &str) -> Result<(String, String)> {
    // Byte search: index 1 need not be a char boundary ("Ġ t"), but a found ' ' always is.
    let bytes = m.as_bytes();
    (1..bytes.len())
        .find(|&i| bytes[i] == b' ')
        .map(|p| (m[..p].to_string(), m[p + 1..].to_string()))
        .ok_or_else(|| EngineError::Tokenizer(format!("malformed BPE merge {m:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_at_first_space_after_first_byte() {
        assert_eq!(split_merge("Ġ t").unwrap(), ("Ġ".into(), "t".into()));
        assert_eq!(split_merge("  x").unwrap(), (" ".into(), "x".into()));
        assert!(split_merge("abc").is_err());
    }

    #[test]
    fn attrs_combine() {
        let a = Attr::from_token_type(4).with(Attr::CONTROL);
        assert!(a.has(Attr::USER_DEFINED) && a.has(Attr::CONTROL) && !a.has(Attr::NORMAL));
        assert_eq!(Attr::from_token_type(99), Attr::default());
    }
}

/// Hand-built vocabularies for unit tests that must not need a model file.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// SPM vocabulary from (text, GGUF token type); scores fall with the id, like
    /// SentencePiece BPE models.
    pub fn toy_vocab(entries: &[(&str, i64)]) -> Vocab {
        let scored: Vec<(&str, i64, f32)> =
            entries.iter().enumerate().map(|(i, &(t, ty))| (t, ty, -(i as f32))).collect();
        toy_vocab_scored(Kind::Spm, &scored)
    }

    pub fn toy_vocab_scored(kind: Kind, entries: &[(&str, i64, f32)]) -> Vocab {
        let tokens: Vec<String> = entries.iter().map(|e| e.0.to_string()).collect();
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        Vocab {
            kind,
            pre: String::new(),
            attrs: entries.iter().map(|e| Attr::from_token_type(e.1)).collect(),
            scores: entries.iter().map(|e| e.2).collect(),
            tokens,
            merges: Vec::new(),
            ids,
            bos: None,
            eos: None,
            unk: entries.iter().position(|e| e.1 == 2).map(|i| i as u32),
            add_bos: false,
            add_space_prefix: false,
            eog: Vec::new(),
        }
    }
}
