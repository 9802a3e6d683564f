//! Building an HF `tokenizers::Tokenizer` from the GGUF vocabulary.
//!
//! * gpt2: BPE with the GGUF merges, the `pre` rules as isolating regex splits, then the
//!   byte-level mapping; byte-level decoder.
//! * llama (SentencePiece): SPM's "merge the adjacent pair forming the highest-scoring
//!   token" becomes BPE by listing, for every token, each split into two vocabulary tokens
//!   as a merge ranked by the token's score (best score = lowest rank). Spaces become '▁' in
//!   the normalizer; unknown characters fall back to `<0xXX>` tokens.
//!
//! Control and user-defined tokens are added tokens, matched on the raw text, so they are
//! split out before pre-tokenization as in llama.cpp.
//!
//! The luodi tokenizer shares only the pre-tokenizer with this one. Its own merging (`bpe.rs`,
//! `spm.rs`) follows llama.cpp where HF cannot: HF BPE lets neighbours of a character missing
//! from the vocabulary merge across it, and ranked merges cannot express SPM's "leftmost
//! wins among equal scores" for different tokens. Both need unusual input to show.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab as HfVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper};

use super::pre::PreRules;
use super::vocab::{Attr, Kind, Vocab};
use crate::error::{EngineError, Result};

fn hf_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(format!("building the {what}: {e}"))
}

fn hf_vocab(vocab: &Vocab) -> HfVocab {
    vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect()
}

/// The HF tokenizer for this vocabulary.
pub(crate) fn build(vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
    match vocab.kind {
        Kind::Bpe => build_bpe(vocab, &PreRules::for_pre(&vocab.pre)),
        Kind::Spm => build_spm(vocab),
    }
}

/// Byte-level BPE tokenizer for `tokenizer.ggml.model = "gpt2"`.
fn build_bpe(vocab: &Vocab, rules: &PreRules) -> Result<tokenizers::Tokenizer> {
    // HF refuses merges whose parts or result are not tokens; llama.cpp tolerates them (see
    // `bpe.rs`), so such merges are simply left out here.
    let known = |s: &str| vocab.ids.contains_key(s);
    let merges =
        vocab.merges.iter().filter(|(a, b)| known(a) && known(b) && known(&format!("{a}{b}"))).cloned().collect();
    let model = BPE::builder()
        .vocab_and_merges(hf_vocab(vocab), merges)
        .ignore_merges(rules.ignore_merges)
        .build()
        .map_err(|e| hf_err("BPE model", e))?;

    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(rules.pre_tokenizer()?));
    tok.with_decoder(Some(ByteLevel::new(false, false, false)));
    finish(tok, vocab)
}

/// SentencePiece tokenizer for `tokenizer.ggml.model = "llama"`, as BPE with derived merges.
fn build_spm(vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
    let mut builder =
        BPE::builder().vocab_and_merges(hf_vocab(vocab), derive_spm_merges(vocab)).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = vocab.unk {
        builder = builder.unk_token(vocab.tokens[unk as usize].clone());
    }
    let model = builder.build().map_err(|e| hf_err("SPM model", e))?;

    let mut normalizers = Vec::new();
    if vocab.add_space_prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    normalizers.push(NormalizerWrapper::Replace(Replace::new(" ", "▁").map_err(|e| hf_err("normalizer", e))?));

    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| hf_err("decoder", e))?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if vocab.add_space_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }

    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers))).map_err(|e| hf_err("normalizer", e))?;
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    finish(tok, vocab)
}

/// Added tokens and the BOS post-processor, shared by both kinds.
fn finish(mut tok: tokenizers::Tokenizer, vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (text, &attr) in vocab.tokens.iter().zip(&vocab.attrs) {
        if attr.has(Attr::CONTROL) || attr.has(Attr::UNKNOWN) {
            special.push(AddedToken::from(text.clone(), true).normalized(false));
        } else if attr.has(Attr::USER_DEFINED) {
            user.push(AddedToken::from(text.clone(), false).normalized(false));
        }
    }
    tok.add_special_tokens(special).map_err(|e| hf_err("special tokens", e))?;
    tok.add_tokens(user).map_err(|e| hf_err("added tokens", e))?;

    if let (true, Some(bos)) = (vocab.add_bos, vocab.bos) {
        let text = vocab.tokens[bos as usize].clone();
        let mut builder = TemplateProcessing::builder();
        builder.try_single(format!("{text} $A")).map_err(|e| hf_err("post-processor", e))?;
        builder.try_pair(format!("{text} $A {text} $B")).map_err(|e| hf_err("post-processor", e))?;
        builder.special_tokens(vec![(text, bos)]);
        let post = builder.build().map_err(|e| hf_err("post-processor", e))?;
        tok.with_post_processor(Some(post));
    }
    Ok(tok)
}

/// BPE merges reproducing SPM's order: for every token, every way to write it as two
/// vocabulary tokens is a merge, ranked by the token's score (highest first), then id, then
/// split position.
pub(crate) fn derive_spm_merges(vocab: &Vocab) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, usize)> = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        if vocab.attrs[id].has(Attr::BYTE) {
            continue; // byte tokens are produced by fallback, never by merging
        }
        for (split, _) in text.char_indices().skip(1) {
            if vocab.ids.contains_key(&text[..split]) && vocab.ids.contains_key(&text[split..]) {
                ranked.push((vocab.scores[id], id as u32, split));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .map(|(_, id, split)| {
            let text = &vocab.tokens[id as usize];
            (text[..split].to_string(), text[split..].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::tests_support::toy_vocab_scored;

    fn pairs(m: &[(String, String)]) -> Vec<String> {
        m.iter().map(|(a, b)| format!("{a}+{b}")).collect()
    }

    #[test]
    fn merges_follow_scores_then_id_then_split() {
        let v = toy_vocab_scored(
            Kind::Spm,
            &[
                ("a", 1, -1.0),
                ("b", 1, -2.0),
                ("c", 1, -3.0),
                ("ab", 1, -10.0),
                ("bc", 1, -5.0),
                ("abc", 1, -4.0),
                ("<0x61>", 6, 0.0),
            ],
        );
        // "abc" (-4) first, with both splits (a|bc, ab|c); then "bc" (-5), then "ab" (-10).
        assert_eq!(pairs(&derive_spm_merges(&v)), ["a+bc", "ab+c", "b+c", "a+b"]);
    }

    #[test]
    fn spm_tokenizer_agrees_with_exact_spm_on_toy_vocab() {
        let v = toy_vocab_scored(
            Kind::Spm,
            &[
                ("<unk>", 2, 0.0),
                ("<0xC3>", 6, 0.0),
                ("<0xA9>", 6, 0.0),
                ("▁", 1, -1.0),
                ("a", 1, -2.0),
                ("b", 1, -3.0),
                ("▁a", 1, -4.0),
                ("ab", 1, -5.0),
                ("▁ab", 1, -6.0),
                ("<x>", 4, 0.0),
            ],
        );
        let hf = build_spm(&v).unwrap();
        let spm = crate::tokenizer::spm::Spm::new(&v);
        for text in ["ab", " ab ab", "ba b", "é a", "a<x>b"] {
            let got = hf.encode(text, false).unwrap().get_ids().to_vec();
            let mut want = Vec::new();
            // "<x>" is user-defined: split out first, as the luodi tokenizer does.
            for (i, part) in text.split("<x>").enumerate() {
                if i > 0 {
                    want.push(9);
                }
                spm.encode(&v, part, false, &mut want);
            }
            assert_eq!(got, want, "{text:?}");
        }
    }
}
