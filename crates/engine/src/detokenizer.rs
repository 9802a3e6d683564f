//! Streaming detokenization: token ids in, text pieces out, each piece valid UTF-8.
//!
//! A token can end in the middle of a character (byte-fallback tokens, byte-level BPE pieces
//! of CJK text or emoji), so bytes of an incomplete character are held back until the token
//! that completes it arrives. Bytes that can never form a character become U+FFFD right
//! away, exactly where `String::from_utf8_lossy` would put them, so the concatenated pieces
//! equal [`Tokenizer::decode`] of the whole sequence.

use crate::tokenizer::Tokenizer;

/// Turns a stream of token ids into text pieces that are always valid UTF-8: bytes of a
/// character split across tokens are held back until complete.
#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    skip_special: bool,
    /// Bytes not yet returned: at most the start of one incomplete character between calls.
    pending: Vec<u8>,
    /// The last returned piece; reused so that steady-state decoding does not allocate.
    out: String,
}

impl IncrementalDecoder {
    /// `skip_special`: control and unknown tokens produce no text (see [`Tokenizer::decode`]).
    pub fn new(skip_special: bool) -> Self {
        IncrementalDecoder { skip_special, pending: Vec::with_capacity(8), out: String::new() }
    }

    /// Feed one token; returns the newly completed text (possibly empty), valid until the
    /// next call.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> &str {
        self.out.clear();
        if self.skip_special && tok.is_hidden_special(id) {
            return &self.out;
        }
        self.push_bytes(tok.token_bytes(id))
    }

    /// Feed raw bytes; returns the newly completed text. [`IncrementalDecoder::push`] is this
    /// with the token's bytes.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> &str {
        self.out.clear();
        self.pending.extend_from_slice(bytes);
        let mut consumed = 0;
        loop {
            match std::str::from_utf8(&self.pending[consumed..]) {
                Ok(valid) => {
                    self.out.push_str(valid);
                    consumed = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid_end = consumed + e.valid_up_to();
                    // The prefix up to `valid_up_to` is valid UTF-8, so this never falls back.
                    self.out.push_str(std::str::from_utf8(&self.pending[consumed..valid_end]).unwrap_or_default());
                    match e.error_len() {
                        // Invalid bytes: no later byte can repair them.
                        Some(bad) => {
                            self.out.push(char::REPLACEMENT_CHARACTER);
                            consumed = valid_end + bad;
                        }
                        // The start of a character that the next token may complete.
                        None => {
                            consumed = valid_end;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        &self.out
    }

    /// End of stream. What can be left is only the start of a character that no token
    /// completed (an answer cut by `max_tokens` or a deadline mid-character): it is dropped,
    /// not turned into U+FFFD, so streamed and whole answers end alike and no answer ends in
    /// a character the model never produced. The decoder is empty afterwards and reusable.
    /// Whether bytes of an unfinished character are held (what [`finish`](Self::finish) drops).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn finish(&mut self) -> String {
        debug_assert!(std::str::from_utf8(&self.pending).is_err() || self.pending.is_empty());
        self.pending.clear();
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode byte chunks one by one and return the non-empty pieces plus the tail.
    fn stream(chunks: &[&[u8]]) -> (Vec<String>, String) {
        let mut d = IncrementalDecoder::new(false);
        let pieces = chunks.iter().map(|c| d.push_bytes(c).to_string()).filter(|p| !p.is_empty()).collect();
        (pieces, d.finish())
    }

    #[test]
    fn chinese_character_split_across_chunks() {
        // 你好 = E4 BD A0 E5 A5 BD
        let (pieces, tail) = stream(&[b"\xE4", b"\xBD", b"\xA0\xE5\xA5", b"\xBD!"]);
        assert_eq!(pieces, ["你", "好!"]);
        assert_eq!(tail, "");
    }

    #[test]
    fn emoji_split_and_cut_off_at_the_end() {
        // 🌟 = F0 9F 8C 9F; the stream ends after the first three bytes of a second one.
        let (pieces, tail) = stream(&[b"\xF0\x9F", b"\x8C", b"\x9F", b"\xF0\x9F", b"\x8C"]);
        assert_eq!(pieces, ["🌟"]);
        assert_eq!(tail, "", "an incomplete character at the end is dropped");
    }

    #[test]
    fn invalid_bytes_match_from_utf8_lossy() {
        let chunks: &[&[u8]] = &[b"a\xFF", b"\xE4\xBD", b"b", b"\xC3", b"\xA9\x80"];
        let (pieces, tail) = stream(chunks);
        let whole: Vec<u8> = chunks.concat();
        assert_eq!(pieces.concat() + &tail, String::from_utf8_lossy(&whole));
        assert_eq!(pieces, ["a\u{FFFD}", "\u{FFFD}b", "é\u{FFFD}"]);
    }

    #[test]
    fn byte_fallback_tokens_through_a_tokenizer() {
        let tok = crate::tokenizer::toy_spm(&[("<eos>", 3), ("<0xE4>", 6), ("<0xBD>", 6), ("<0xA0>", 6), ("▁hi", 1)]);
        let mut d = IncrementalDecoder::new(true);
        assert_eq!(d.push(&tok, 4), " hi");
        assert_eq!(d.push(&tok, 1), "");
        assert_eq!(d.push(&tok, 2), "");
        assert_eq!(d.push(&tok, 0), ""); // control, skipped; the pending bytes stay
        assert_eq!(d.push(&tok, 3), "你");
        assert_eq!(d.finish(), "");

        let mut keep = IncrementalDecoder::new(false);
        assert_eq!(keep.push(&tok, 0), "<eos>");
    }
}
