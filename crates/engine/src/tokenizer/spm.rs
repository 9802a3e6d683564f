//! SentencePiece ("llama" GGUF tokenizer) encoding, the way llama.cpp's `llm_tokenizer_spm`
//! does it:
//!
//! 1. spaces become U+2581 ('▁'), with one prepended when the GGUF asks for a space prefix
//!    and the fragment starts the text or follows a special token;
//! 2. the fragment starts as one symbol per character;
//! 3. repeatedly merge the adjacent pair whose concatenation is a vocabulary token with the
//!    highest score, leftmost on ties (any vocabulary token counts, control ones included);
//! 4. each final symbol is its token, or, if it is a character missing from the vocabulary,
//!    its UTF-8 bytes as `<0xXX>` byte tokens.
//!
//! This runs on the whole fragment (no pre-tokenizer), so a token may span words.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// Per-fragment SPM encoder state that does not depend on the text.
pub(crate) struct Spm {
    /// Token for each byte value: `<0xXX>`, else the one-byte text itself, else `<unk>`.
    byte_tokens: Vec<Option<u32>>,
}

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` and its right neighbour `right`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text, to detect that a symbol changed since it was queued.
    size: usize,
}

impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl Spm {
    pub fn new(vocab: &Vocab) -> Self {
        let mut byte_tokens = vec![None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            let single = (b < 0x80).then(|| (b as u8 as char).to_string());
            *slot = vocab.ids.get(&hex).or_else(|| single.and_then(|s| vocab.ids.get(&s))).copied().or(vocab.unk);
        }
        Spm { byte_tokens }
    }

    /// Encode one raw-text fragment, appending to `out`.
    pub fn encode(&self, vocab: &Vocab, raw: &str, space_prefix: bool, out: &mut Vec<u32>) {
        let mut text = String::with_capacity(raw.len() * 3 + 3);
        if space_prefix {
            text.push('▁');
        }
        for c in raw.chars() {
            text.push(if c == ' ' { '▁' } else { c });
        }
        if text.is_empty() {
            return;
        }

        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (start + c.len_utf8() < text.len()).then_some(i + 1),
            });
        }

        let mut queue = BinaryHeap::with_capacity(symbols.len());
        let try_add =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: Option<usize>, right: Option<usize>| {
                let (Some(left), Some(right)) = (left, right) else { return };
                let (l, r) = (&symbols[left], &symbols[right]);
                let merged = &text[l.start..l.start + l.len + r.len];
                if let Some(&id) = vocab.ids.get(merged) {
                    queue.push(Bigram { score: vocab.scores[id as usize], left, right, size: merged.len() });
                }
            };
        for i in 1..symbols.len() {
            try_add(&symbols, &mut queue, Some(i - 1), Some(i));
        }

        while let Some(bigram) = queue.pop() {
            let (l, r) = (&symbols[bigram.left], &symbols[bigram.right]);
            // Stale: one side was merged away or grew since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            let right_next = r.next;
            symbols[bigram.left].len += symbols[bigram.right].len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = right_next;
            if let Some(n) = right_next {
                symbols[n].prev = Some(bigram.left);
            }
            let prev = symbols[bigram.left].prev;
            try_add(&symbols, &mut queue, prev, Some(bigram.left));
            try_add(&symbols, &mut queue, Some(bigram.left), right_next);
        }

        let mut i = Some(0);
        while let Some(idx) = i {
            let s = &symbols[idx];
            let piece = &text[s.start..s.start + s.len];
            // Merged symbols are vocabulary tokens by construction; only single characters
            // can be missing, and those fall back to byte tokens.
            match vocab.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_tokens[b as usize])),
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

    fn encode(vocab: &Vocab, text: &str, prefix: bool) -> Vec<String> {
        let mut out = Vec::new();
        Spm::new(vocab).encode(vocab, text, prefix, &mut out);
        out.iter().map(|&id| vocab.tokens[id as usize].clone()).collect()
    }

    fn toy() -> Vocab {
        toy_vocab_scored(
            Kind::Spm,
            &[
                ("<unk>", 2, 0.0),
                ("<0xE4>", 6, 0.0),
                ("<0xBD>", 6, 0.0),
                ("<0xA0>", 6, 0.0),
                ("▁", 1, -1.0),
                ("a", 1, -2.0),
                ("b", 1, -3.0),
                ("c", 1, -4.0),
                ("ab", 1, -10.0),
                ("bc", 1, -5.0),
                ("▁a", 1, -6.0),
                ("abc", 1, -20.0),
                ("▁ab", 1, -7.0),
                ("aa", 1, -8.0),
            ],
        )
    }

    #[test]
    fn highest_score_merges_first() {
        let v = toy();
        // "bc" (-5) beats "ab" (-10): a + bc, and "abc" is then formed from a + bc.
        assert_eq!(encode(&v, "abc", false), ["abc"]);
        // "ab" alone: a + b -> ab.
        assert_eq!(encode(&v, "ab", false), ["ab"]);
        // "bc" (-5) goes first and takes the 'b' that "▁ab" would have needed.
        assert_eq!(encode(&v, " abc", false), ["▁a", "bc"]);
        assert_eq!(encode(&v, " ab", false), ["▁ab"]);
    }

    #[test]
    fn leftmost_pair_wins_a_tie() {
        let v = toy();
        // "ab" at 0..2 and 2..4 have the same score; both merge, leftmost first.
        assert_eq!(encode(&v, "abab", false), ["ab", "ab"]);
        // "aaa": the pairs at 0..2 and 1..3 overlap and tie; the left one wins.
        assert_eq!(encode(&v, "aaa", false), ["aa", "a"]);
    }

    #[test]
    fn space_prefix_and_escaping() {
        let v = toy();
        assert_eq!(encode(&v, "a", true), ["▁a"]);
        assert_eq!(encode(&v, "a b", false), ["a", "▁", "b"]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let v = toy();
        // '你' = E4 BD A0
        assert_eq!(encode(&v, "a你", false), ["a", "<0xE4>", "<0xBD>", "<0xA0>"]);
        // 'é' = C3 A9: no byte tokens at all, so <unk> per byte.
        assert_eq!(encode(&v, "é", false), ["<unk>", "<unk>"]);
    }
}
