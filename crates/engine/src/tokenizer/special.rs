//! Splitting special tokens out of the text before the model tokenizer sees it, with
//! llama.cpp's rules (`tokenizer_st_partition`):
//!
//! * candidates are the control, unknown and user-defined tokens; control and unknown ones
//!   only when `parse_special` is set, user-defined ones always;
//! * candidates are tried longest text first; each one takes every non-overlapping
//!   occurrence, left to right, that lies wholly inside text not yet taken by an earlier
//!   (longer) candidate.
//!
//! That is not the leftmost-longest matching of HF `tokenizers`: with overlapping candidates
//! a longer one later in the text wins over a shorter one earlier. llama.cpp searches the
//! text once per candidate (thousands of searches for Gemma's vocabulary); we first find,
//! in one trie walk, which candidates occur at all and search only for those.

use std::ops::Range;

use super::vocab::{Attr, Vocab};

/// A piece of the input: raw text for the model tokenizer, or an already-decided token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

struct Candidate {
    id: u32,
    len: usize,
    /// Control / unknown tokens are only split out when the caller asks for it.
    needs_parse_special: bool,
}

/// Byte trie over the candidate texts.
#[derive(Default)]
struct Node {
    /// Sorted by byte, for binary search.
    children: Vec<(u8, u32)>,
    /// Index into `SpecialTokens::candidates` of the token ending here.
    candidate: Option<u32>,
}

pub(crate) struct SpecialTokens {
    /// In llama.cpp's priority order: longer texts first, then lower id.
    candidates: Vec<Candidate>,
    /// The candidates' texts, same order.
    texts: Vec<String>,
    nodes: Vec<Node>,
}

impl SpecialTokens {
    pub fn new(vocab: &Vocab) -> Self {
        let mut ids: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&id| {
                let a = vocab.attr(id);
                a.has(Attr::CONTROL) || a.has(Attr::USER_DEFINED) || a.has(Attr::UNKNOWN)
            })
            .collect();
        // llama.cpp uses an unstable sort by length only; ties between equal-length texts
        // only matter when they overlap, and we break them by id to stay deterministic.
        ids.sort_by_key(|&id| (std::cmp::Reverse(vocab.tokens[id as usize].len()), id));

        let mut this = SpecialTokens {
            candidates: Vec::with_capacity(ids.len()),
            texts: Vec::with_capacity(ids.len()),
            nodes: vec![Node::default()],
        };
        for id in ids {
            let text = vocab.tokens[id as usize].as_bytes();
            let a = vocab.attr(id);
            let index = this.candidates.len() as u32;
            this.candidates.push(Candidate {
                id,
                len: text.len(),
                needs_parse_special: a.has(Attr::CONTROL) || a.has(Attr::UNKNOWN),
            });
            this.texts.push(vocab.tokens[id as usize].clone());
            let node = this.insert(text);
            this.nodes[node].candidate.get_or_insert(index);
        }
        this
    }

    fn insert(&mut self, text: &[u8]) -> usize {
        let mut node = 0usize;
        for &b in text {
            node = match self.nodes[node].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[node].children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].children.insert(i, (b, next as u32));
                    next
                }
            };
        }
        node
    }

    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children.binary_search_by_key(&b, |c| c.0).ok().map(|i| children[i].1 as usize)
    }

    /// Split `text` into raw-text and special-token fragments.
    pub fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut fragments = vec![Fragment::Text(0..text.len())];
        for c in self.occurring(text.as_bytes(), parse_special) {
            let cand = &self.candidates[c];
            let needle = &self.texts[c];
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for frag in fragments {
                let Fragment::Text(range) = frag else {
                    next.push(frag);
                    continue;
                };
                // `match_indices` is llama.cpp's find loop: non-overlapping, left to right,
                // and confined to this raw fragment.
                let mut pos = range.start;
                for (offset, _) in text[range.clone()].match_indices(needle.as_str()) {
                    let start = range.start + offset;
                    if start > pos {
                        next.push(Fragment::Text(pos..start));
                    }
                    next.push(Fragment::Token(cand.id));
                    pos = start + cand.len;
                }
                if pos < range.end {
                    next.push(Fragment::Text(pos..range.end));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Indices (in priority order) of the applicable candidates that occur in `bytes` at
    /// all, so that the per-candidate passes above run for a handful of tokens rather than
    /// for the whole special vocabulary.
    fn occurring(&self, bytes: &[u8], parse_special: bool) -> Vec<usize> {
        let mut seen = vec![false; self.candidates.len()];
        for start in 0..bytes.len() {
            let mut node = 0usize;
            for &b in &bytes[start..] {
                match self.child(node, b) {
                    Some(next) => node = next,
                    None => break,
                }
                if let Some(c) = self.nodes[node].candidate {
                    seen[c as usize] = true;
                }
            }
        }
        (0..self.candidates.len())
            .filter(|&c| seen[c] && (parse_special || !self.candidates[c].needs_parse_special))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::tests_support::toy_vocab;

    fn show(text: &str, frags: &[Fragment]) -> Vec<String> {
        frags
            .iter()
            .map(|f| match f {
                Fragment::Text(r) => format!("{:?}", &text[r.clone()]),
                Fragment::Token(id) => format!("#{id}"),
            })
            .collect()
    }

    fn vocab() -> Vocab {
        // id: text, token type (3 control, 4 user-defined, 1 normal)
        toy_vocab(&[
            ("<|im_start|>", 3),
            ("<|im_end|>", 3),
            ("\n", 4),
            ("\n\n", 4),
            ("ab", 4),
            ("bcd", 4),
            ("a", 1),
            ("b", 1),
        ])
    }

    #[test]
    fn control_tokens_only_with_parse_special() {
        let v = vocab();
        let st = SpecialTokens::new(&v);
        let text = "<|im_start|>user x<|im_end|>";
        assert_eq!(show(text, &st.partition(text, true)), ["#0", "\"user x\"", "#1"]);
        assert_eq!(show(text, &st.partition(text, false)), [format!("{text:?}")]);
    }

    #[test]
    fn user_defined_tokens_are_always_split_out() {
        let v = vocab();
        let st = SpecialTokens::new(&v);
        let text = "x\n\n\ny";
        // longest first: "\n\n" takes bytes 1..3, then "\n" takes the third newline.
        assert_eq!(show(text, &st.partition(text, false)), ["\"x\"", "#3", "#2", "\"y\""]);
    }

    #[test]
    fn longer_candidate_wins_over_earlier_shorter_overlap() {
        let v = vocab();
        let st = SpecialTokens::new(&v);
        // Leftmost-longest would take "ab" then leave "cd"; llama.cpp tries the 3-byte
        // "bcd" first.
        let text = "abcd";
        assert_eq!(show(text, &st.partition(text, true)), ["\"a\"", "#5"]);
    }

    #[test]
    fn empty_and_plain_text() {
        let v = vocab();
        let st = SpecialTokens::new(&v);
        assert!(st.partition("", true).is_empty());
        assert_eq!(st.partition("zzz", true), vec![Fragment::Text(0..3)]);
    }
}
