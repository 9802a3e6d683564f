//! Byte-level BPE encoding of one raw-text fragment, as llama.cpp's `llm_tokenizer_bpe`:
//!
//! 1. the HF pre-tokenizer built from the `pre` rules (`pre.rs`) splits the fragment and maps bytes to
//!    GPT-2's characters (special tokens were already split out by `special.rs`, so the HF
//!    added-token matching is bypassed on purpose);
//! 2. each piece starts as one symbol per character; the adjacent pair with the lowest
//!    merge rank (leftmost on ties) merges, until no ranked pair is left;
//! 3. each symbol is its token; a symbol that is not a token (a byte missing from the
//!    vocabulary) yields nothing, or its ASCII bytes if those are tokens.
//!
//! The merging is ours rather than the HF `BPE` model's because HF drops a character missing
//! from the vocabulary before merging, letting its neighbours merge across it; llama.cpp
//! keeps it as a barrier. (SmolLM2's vocabulary lacks the lead bytes F1..F3, for instance.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper};

use super::vocab::Vocab;
use crate::error::{EngineError, Result};

/// Merge table keyed by symbol ids: vocabulary ids, then ids for merge parts and results
/// that are not vocabulary tokens (llama.cpp merges by string, vocabulary or not).
pub(crate) struct BpeMerges {
    /// (left, right) -> (rank, merged symbol).
    ranks: HashMap<(u32, u32), (u32, u32)>,
    /// Strings that occur in merges but not in the vocabulary, numbered from `vocab.len()`.
    extra_ids: HashMap<String, u32>,
    /// llama.cpp's `ignore_merges`: a piece that is a whole token is emitted as is.
    ignore_merges: bool,
}

/// One symbol of the piece being merged.
struct Symbol {
    start: usize,
    len: usize,
    /// `None` for a character that is in no merge and no token: it never merges.
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    /// The pair's ids when queued, to drop the entry if either side changed since.
    ids: (u32, u32),
    merged: u32,
}

impl BpeMerges {
    pub fn new(vocab: &Vocab, ignore_merges: bool) -> Self {
        let mut extra_ids: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(&id) = vocab.ids.get(s) {
                return id;
            }
            let next = (vocab.len() + extra_ids.len()) as u32;
            *extra_ids.entry(s.to_string()).or_insert(next)
        };
        let mut ranks = HashMap::with_capacity(vocab.merges.len());
        for (rank, (a, b)) in vocab.merges.iter().enumerate() {
            let key = (intern(a), intern(b));
            let merged = intern(&format!("{a}{b}"));
            // llama.cpp keeps the first rank of a pair listed twice.
            ranks.entry(key).or_insert((rank as u32, merged));
        }
        BpeMerges { ranks, extra_ids, ignore_merges }
    }

    fn symbol_id(&self, vocab: &Vocab, s: &str) -> Option<u32> {
        vocab.ids.get(s).or_else(|| self.extra_ids.get(s)).copied()
    }

    /// Encode one raw-text fragment, appending to `out`.
    pub fn encode_fragment(
        &self,
        vocab: &Vocab,
        pre_tokenizer: &PreTokenizerWrapper,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let mut pre = PreTokenizedString::from(text);
        pre_tokenizer.pre_tokenize(&mut pre).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        for (piece, _, _) in pre.get_splits(OffsetReferential::Normalized, OffsetType::None) {
            self.encode_piece(vocab, piece, out);
        }
        Ok(())
    }

    fn encode_piece(&self, vocab: &Vocab, piece: &str, out: &mut Vec<u32>) {
        if self.ignore_merges {
            if let Some(&id) = vocab.ids.get(piece) {
                out.push(id);
                return;
            }
        }

        let mut symbols: Vec<Symbol> = Vec::with_capacity(piece.len());
        for (i, (start, c)) in piece.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start,
                len,
                id: self.symbol_id(vocab, &piece[start..start + len]),
                prev: i.checked_sub(1),
                next: (start + len < piece.len()).then_some(i + 1),
            });
        }

        // Min-heap on (rank, left position).
        let mut queue: BinaryHeap<Reverse<(u32, usize, usize)>> = BinaryHeap::new();
        let mut bigrams: Vec<Bigram> = Vec::new();
        let add = |symbols: &[Symbol],
                   queue: &mut BinaryHeap<Reverse<(u32, usize, usize)>>,
                   bigrams: &mut Vec<Bigram>,
                   left: Option<usize>,
                   right: Option<usize>| {
            let (Some(left), Some(right)) = (left, right) else { return };
            let (Some(a), Some(b)) = (symbols[left].id, symbols[right].id) else { return };
            if let Some(&(rank, merged)) = self.ranks.get(&(a, b)) {
                queue.push(Reverse((rank, left, bigrams.len())));
                bigrams.push(Bigram { left, right, ids: (a, b), merged });
            }
        };
        for i in 1..symbols.len() {
            add(&symbols, &mut queue, &mut bigrams, Some(i - 1), Some(i));
        }

        while let Some(Reverse((_, _, index))) = queue.pop() {
            let Bigram { left, right, ids, merged } = bigrams[index];
            let (l, r) = (&symbols[left], &symbols[right]);
            if l.len == 0 || r.len == 0 || l.id != Some(ids.0) || r.id != Some(ids.1) {
                continue;
            }
            let right_next = r.next;
            symbols[left].len += symbols[right].len;
            symbols[left].id = Some(merged);
            symbols[left].next = right_next;
            symbols[right].len = 0;
            if let Some(n) = right_next {
                symbols[n].prev = Some(left);
            }
            let prev = symbols[left].prev;
            add(&symbols, &mut queue, &mut bigrams, prev, Some(left));
            add(&symbols, &mut queue, &mut bigrams, Some(left), right_next);
        }

        let mut i = (!symbols.is_empty()).then_some(0);
        while let Some(idx) = i {
            let s = &symbols[idx];
            match s.id {
                Some(id) if (id as usize) < vocab.len() => out.push(id),
                _ => {
                    // llama.cpp looks each byte up as a one-byte token; only ASCII can be one.
                    let text = &piece[s.start..s.start + s.len];
                    for b in text.bytes().filter(u8::is_ascii) {
                        out.extend(vocab.ids.get(&(b as char).to_string()));
                    }
                }
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::tests_support::toy_vocab_scored;
    use crate::tokenizer::vocab::Kind;

    fn toy(merges: &[(&str, &str)]) -> Vocab {
        let mut v = toy_vocab_scored(
            Kind::Bpe,
            &[("a", 1, 0.0), ("b", 1, 0.0), ("c", 1, 0.0), ("ab", 1, 0.0), ("bc", 1, 0.0), ("abc", 1, 0.0)],
        );
        v.merges = merges.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        v
    }

    fn encode(v: &Vocab, piece: &str, ignore_merges: bool) -> Vec<String> {
        let mut out = Vec::new();
        BpeMerges::new(v, ignore_merges).encode_piece(v, piece, &mut out);
        out.iter().map(|&id| v.tokens[id as usize].clone()).collect()
    }

    #[test]
    fn lowest_rank_merges_first() {
        let v = toy(&[("b", "c"), ("a", "b"), ("a", "bc")]);
        assert_eq!(encode(&v, "abc", false), ["abc"]);
        let v = toy(&[("a", "b"), ("b", "c")]);
        assert_eq!(encode(&v, "abc", false), ["ab", "c"]);
    }

    #[test]
    fn unknown_character_blocks_merging_and_is_dropped() {
        let v = toy(&[("a", "b")]);
        // 'x' is no token: it stays between 'a' and 'b', then disappears.
        assert_eq!(encode(&v, "axb", false), ["a", "b"]);
        assert_eq!(encode(&v, "ab", false), ["ab"]);
    }

    #[test]
    fn merges_through_strings_outside_the_vocabulary() {
        // Neither "ca" nor "cab" is a token, yet llama.cpp merges by string: c+a, then ca+b.
        // The final symbol "cab" is no token, so it falls back to its ASCII bytes.
        let v = toy(&[("c", "a"), ("ca", "b")]);
        assert_eq!(encode(&v, "cab", false), ["c", "a", "b"]);
    }

    #[test]
    fn ignore_merges_takes_whole_tokens() {
        let v = toy(&[("a", "b")]);
        assert_eq!(encode(&v, "abc", true), ["abc"]);
        assert_eq!(encode(&v, "abc", false), ["ab", "c"]);
    }
}
