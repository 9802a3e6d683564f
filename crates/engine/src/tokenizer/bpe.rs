//! Byte-level BPE encoding of one raw-text fragment through the HF pipeline: the `pre`
//! regex splits, the byte-level mapping, then ranked merges. Special tokens were already
//! split out by `special.rs`, so the HF added-token matching is bypassed on purpose (it
//! would also split control tokens when the caller did not ask for it).

use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use crate::error::{EngineError, Result};

pub(crate) fn encode_fragment(hf: &tokenizers::Tokenizer, text: &str, out: &mut Vec<u32>) -> Result<()> {
    let err = |e: tokenizers::Error| EngineError::Tokenizer(e.to_string());
    let mut pre = PreTokenizedString::from(text);
    if let Some(p) = hf.get_pre_tokenizer() {
        p.pre_tokenize(&mut pre).map_err(err)?;
    }
    let model = hf.get_model();
    pre.tokenize(|piece| model.tokenize(piece.get())).map_err(err)?;
    for (_, _, tokens) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
        out.extend(tokens.iter().flatten().map(|t| t.id));
    }
    Ok(())
}
