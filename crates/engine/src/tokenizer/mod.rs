//! The tokenizer of a GGUF model, equal to llama.cpp's token for token.
//!
//! Encoding follows llama.cpp's `llama_vocab::tokenize`:
//! 1. optional BOS (when the caller asks and the GGUF says `add_bos_token`);
//! 2. special tokens are split out of the text (`special.rs`): control tokens only when
//!    `parse_special`, user-defined tokens always;
//! 3. each remaining fragment goes through the model tokenizer: byte-level BPE (`bpe.rs`:
//!    the HF `tokenizers` pre-tokenizer for the `pre` rules, then llama.cpp's ranked merging),
//!    or SentencePiece (`spm.rs`: llama.cpp's highest-score bigram merging).
//!
//! Decoding concatenates each token's bytes (`bytes.rs`), as llama.cpp's `token_to_piece`
//! does, so streamed and whole-sequence decoding agree byte for byte.
//!
//! An HF `tokenizers::Tokenizer` equivalent is available through [`Tokenizer::hf`] (`hf.rs`).

mod bpe;
mod bytes;
mod hf;
mod pre;
mod special;
mod spm;
mod vocab;

use std::sync::OnceLock;

use crate::error::Result;
use crate::gguf::Metadata;
use bpe::BpeMerges;
use bytes::TokenBytes;
use pre::PreRules;
use special::{Fragment, SpecialTokens};
use spm::Spm;
use vocab::{Attr, Kind, Vocab};

/// A GGUF model's tokenizer. Cheap to share: `Send + Sync`, all methods take `&self`.
pub struct Tokenizer {
    vocab: Vocab,
    special: SpecialTokens,
    bytes: TokenBytes,
    model: ModelTokenizer,
    /// Built on first use of [`Tokenizer::hf`] only: encoding does not need it, and for a
    /// 262k SentencePiece vocabulary it means deriving half a million merges.
    hf: OnceLock<tokenizers::Tokenizer>,
}

enum ModelTokenizer {
    // Boxed: the pre-tokenizer is large and only one tokenizer exists per model.
    Bpe { pre: Box<tokenizers::PreTokenizerWrapper>, merges: BpeMerges },
    Spm(Spm),
}

impl Tokenizer {
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        Self::from_vocab(Vocab::from_gguf(meta)?)
    }

    fn from_vocab(vocab: Vocab) -> Result<Self> {
        let model = match vocab.kind {
            Kind::Bpe => {
                let rules = PreRules::for_pre(&vocab.pre);
                ModelTokenizer::Bpe {
                    pre: Box::new(rules.pre_tokenizer()?),
                    merges: BpeMerges::new(&vocab, rules.ignore_merges),
                }
            }
            Kind::Spm => ModelTokenizer::Spm(Spm::new(&vocab)),
        };
        Ok(Tokenizer {
            special: SpecialTokens::new(&vocab),
            bytes: TokenBytes::new(&vocab),
            vocab,
            model,
            hf: OnceLock::new(),
        })
    }

    /// Encode text. `add_bos`: prepend BOS if the GGUF says `add_bos_token` (llama.cpp's
    /// `add_special`; no check for a BOS already written in the text, as in llama.cpp).
    /// `parse_special`: split out control tokens written in the text (e.g. "<|im_start|>");
    /// user-defined tokens are split out either way.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos && self.vocab.add_bos {
            out.extend(self.vocab.bos);
        }
        // SPM's optional space prefix goes on fragments that start the text or follow a
        // special token.
        let mut after_special = true;
        for fragment in self.special.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    let piece = &text[range];
                    match &self.model {
                        ModelTokenizer::Bpe { pre, merges } => {
                            merges.encode_fragment(&self.vocab, pre, piece, &mut out)?
                        }
                        ModelTokenizer::Spm(spm) => {
                            spm.encode(&self.vocab, piece, self.vocab.add_space_prefix && after_special, &mut out)
                        }
                    }
                    after_special = false;
                }
            }
        }
        Ok(out)
    }

    /// Decode ids to text; bytes that are not valid UTF-8 become U+FFFD. With
    /// `skip_special`, control and unknown tokens produce nothing (user-defined ones still
    /// do), like llama.cpp's `token_to_piece(special = false)`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut buf = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if !(skip_special && self.is_hidden_special(id)) {
                buf.extend_from_slice(self.token_bytes(id));
            }
        }
        match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The raw bytes a token stands for in output (byte-level characters unmapped, SPM '▁'
    /// as ' ' and `<0xXX>` as that byte; control tokens as their text). Empty for unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id)
    }

    /// The vocabulary string as stored in the GGUF.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.ids.get(text).copied()
    }

    /// Control token (including end-of-generation markers llama.cpp promotes to control).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id).has(Attr::CONTROL)
    }

    /// Tokens that `skip_special` decoding drops: control and unknown ones.
    pub(crate) fn is_hidden_special(&self, id: u32) -> bool {
        let a = self.vocab.attr(id);
        a.has(Attr::CONTROL) || a.has(Attr::UNKNOWN)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.vocab.bos
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.vocab.eos
    }

    pub fn add_bos_token(&self) -> bool {
        self.vocab.add_bos
    }

    /// End-of-generation ids (sorted): EOS, EOT/EOM, and the marker tokens llama.cpp
    /// recognises by name ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", ...).
    pub fn eog_token_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// An HF `tokenizers` equivalent (added tokens, BOS post-processor, decoder), built on
    /// first call (about 0.1 s for a 49k BPE vocabulary, 1 s for Gemma's 262k SPM one). It
    /// agrees with [`Tokenizer::encode`] except on input llama.cpp treats specially: overlapping
    /// special tokens, characters missing from a byte-level vocabulary, equal SPM scores.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        self.hf.get_or_init(|| {
            // Cannot fail: merges are filtered to (BPE) or derived from (SPM) the vocabulary,
            // and the pre-tokenizer regexes already compiled when this tokenizer was built.
            hf::build(&self.vocab).expect("HF tokenizer from an already validated vocabulary")
        })
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab.kind)
            .field("pre", &self.vocab.pre)
            .field("vocab_size", &self.vocab.len())
            .field("bos", &self.vocab.bos)
            .field("eos", &self.vocab.eos)
            .field("add_bos", &self.vocab.add_bos)
            .finish()
    }
}

/// A tokenizer over a hand-written SPM vocabulary of (text, GGUF token type), for unit tests
/// elsewhere in the crate that must not need a model file.
#[cfg(test)]
pub(crate) fn toy_spm(entries: &[(&str, i64)]) -> Tokenizer {
    Tokenizer::from_vocab(vocab::tests_support::toy_vocab(entries)).expect("toy vocabulary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_then_spm_with_space_prefix_after_each_special() {
        let mut v =
            vocab::tests_support::toy_vocab(&[("<s>", 3), ("<t>", 4), ("▁", 1), ("a", 1), ("▁a", 1), ("<0x0A>", 6)]);
        v.add_space_prefix = true;
        v.add_bos = true;
        v.bos = Some(0);
        let t = Tokenizer::from_vocab(v).unwrap();
        // BOS, then " a" (prefix), user-defined <t>, " a" again after the special, "\n" as byte.
        assert_eq!(t.encode("a<t>a\n", true, false).unwrap(), [0, 4, 1, 4, 5]);
        // Control "<s>" in the text is only a token with parse_special.
        assert_eq!(t.encode("<s>", false, true).unwrap(), [0]);
        assert_ne!(t.encode("<s>", false, false).unwrap(), [0]);
        assert_eq!(t.decode(&[0, 4, 1, 4, 5], true), " a<t> a\n");
        assert_eq!(t.decode(&[0, 4], false), "<s> a");
    }

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
    }
}
