//! Pre-tokenizer rules for byte-level BPE, chosen by `tokenizer.ggml.pre` as in llama.cpp's
//! `llm_tokenizer_bpe` constructor.
//!
//! llama.cpp applies a list of regexes in turn: each one splits every piece produced by the
//! previous ones, keeping both the matches and the text between them as pieces. In HF terms
//! that is one `Split(regex, Isolated)` per regex, followed by the byte-level mapping.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{EngineError, Result};

/// GPT-2's split regex (llama.cpp hand-codes it as `unicode_regex_split_custom_gpt2`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split regex, with the case-insensitive contractions spelled out as llama.cpp does.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2: like Llama 3 but single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level BPE vocabulary splits text before merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreRules {
    /// Applied in order, each as an isolating split.
    pub regexes: Vec<&'static str>,
    /// llama.cpp's `ignore_merges`: a piece that is a whole vocabulary token is emitted as is.
    pub ignore_merges: bool,
}

impl PreRules {
    pub fn for_pre(pre: &str) -> PreRules {
        let rules = |regexes: Vec<&'static str>, ignore_merges| PreRules { regexes, ignore_merges };
        match pre {
            // Digits one by one, then GPT-2.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
                rules(vec![r"\p{N}", GPT2], false)
            }
            "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" | "exaone4"
            | "jina-es" | "jina-de" | "jina-v1-en" | "jina-v2-es" | "jina-v2-de" | "jina-v2-code" | "roberta-bpe"
            | "gigachat" | "mellum" | "modern-bert" => rules(vec![GPT2], false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
                rules(vec![LLAMA3], true)
            }
            "dbrx" | "smaug-bpe" => rules(vec![LLAMA3], false),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => rules(vec![QWEN2], false),
            "falcon" => rules(vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"], false),
            // llama.cpp's default list for BPE vocabularies without a known `pre`.
            "default" | "" => rules(vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], false),
            other => {
                // llama.cpp refuses unknown pre-tokenizers; GPT-2's rules are the least
                // surprising guess and keep such models usable.
                tracing::warn!(pre = other, "unknown tokenizer.ggml.pre, splitting text like GPT-2");
                rules(vec![GPT2], false)
            }
        }
    }
}

impl PreRules {
    /// The HF pre-tokenizer: one isolating split per regex, then GPT-2's byte mapping.
    pub fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper> {
        let mut steps = Vec::with_capacity(self.regexes.len() + 1);
        for re in &self.regexes {
            let split = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer regex {re:?}: {e}")))?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        // The regexes above did the splitting; this step only maps bytes to characters.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_splits_digits_before_gpt2() {
        let r = PreRules::for_pre("smollm");
        assert_eq!(r.regexes, [r"\p{N}", GPT2]);
        assert!(!r.ignore_merges);
    }

    #[test]
    fn every_rule_set_compiles() {
        for pre in ["smollm", "gpt2", "default", "llama-bpe", "qwen2", "falcon", "dbrx"] {
            PreRules::for_pre(pre).pre_tokenizer().unwrap();
        }
    }

    #[test]
    fn llama3_ignores_merges_and_unknown_falls_back() {
        assert!(PreRules::for_pre("llama-bpe").ignore_merges);
        assert_eq!(PreRules::for_pre("no-such-pre").regexes, [GPT2]);
    }
}
