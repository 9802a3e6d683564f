//! What each token contributes to the output, as bytes (llama.cpp's `token_to_piece`),
//! precomputed once so the streaming detokenizer does a slice lookup per token.
//!
//! * byte-level BPE: each character of a normal token stands for one byte (GPT-2's
//!   printable remapping of 0..=255);
//! * SentencePiece: '▁' is a space and `<0xXX>` tokens are the byte 0xXX;
//! * control, unknown and user-defined tokens: their text as is;
//! * unused / undefined tokens: nothing.

use super::vocab::{Attr, Kind, Vocab};

/// GPT-2's byte <-> character mapping: printable Latin-1 bytes map to themselves, the rest to
/// U+0100 onwards in byte order.
pub(crate) fn byte_level_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("U+0100..U+0143 are valid chars")
}

/// Inverse of [`byte_level_char`], as a table over the characters U+0000..U+0143.
fn byte_level_inverse() -> Vec<Option<u8>> {
    let mut table = vec![None; 0x144];
    for b in 0..=255u8 {
        table[byte_level_char(b) as usize] = Some(b);
    }
    table
}

/// All tokens' output bytes in one buffer.
pub(crate) struct TokenBytes {
    data: Vec<u8>,
    /// `offsets[id]..offsets[id + 1]` is token `id`'s slice of `data`.
    offsets: Vec<u32>,
}

impl TokenBytes {
    pub fn new(vocab: &Vocab) -> Self {
        let inverse = byte_level_inverse();
        let mut data = Vec::with_capacity(vocab.tokens.iter().map(String::len).sum());
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        offsets.push(0);
        for (text, &attr) in vocab.tokens.iter().zip(&vocab.attrs) {
            if attr.has(Attr::CONTROL) || attr.has(Attr::UNKNOWN) || attr.has(Attr::USER_DEFINED) {
                data.extend_from_slice(text.as_bytes());
            } else if attr.has(Attr::NORMAL) {
                match vocab.kind {
                    Kind::Bpe => {
                        for c in text.chars() {
                            match inverse.get(c as usize).copied().flatten() {
                                Some(b) => data.push(b),
                                // Not a byte-level character (a malformed vocabulary):
                                // llama.cpp prints a marker; the character itself is kinder.
                                None => data.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                            }
                        }
                    }
                    Kind::Spm => {
                        for c in text.chars() {
                            match c {
                                '▁' => data.push(b' '),
                                c => data.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                            }
                        }
                    }
                }
            } else if attr.has(Attr::BYTE) {
                data.extend(parse_byte_token(text));
            }
            offsets.push(data.len() as u32);
        }
        TokenBytes { data, offsets }
    }

    pub fn get(&self, id: u32) -> &[u8] {
        let id = id as usize;
        match (self.offsets.get(id), self.offsets.get(id + 1)) {
            (Some(&a), Some(&b)) => &self.data[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// `<0xAB>` -> 0xAB.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::tests_support::{toy_vocab, toy_vocab_scored};

    #[test]
    fn gpt2_byte_map_matches_the_known_characters() {
        assert_eq!(byte_level_char(b' '), 'Ġ');
        assert_eq!(byte_level_char(b'\n'), 'Ċ');
        assert_eq!(byte_level_char(b'a'), 'a');
        assert_eq!(byte_level_char(0xAD), 'Ń');
        assert_eq!(byte_level_char(0), 'Ā');
        let inv = byte_level_inverse();
        assert!((0..=255u8).all(|b| inv[byte_level_char(b) as usize] == Some(b)));
    }

    #[test]
    fn spm_pieces() {
        let v = toy_vocab(&[("<s>", 3), ("▁hello", 1), ("<0x0A>", 6), ("<b>", 4), ("<unused0>", 5)]);
        let t = TokenBytes::new(&v);
        assert_eq!(t.get(0), b"<s>");
        assert_eq!(t.get(1), b" hello");
        assert_eq!(t.get(2), b"\n");
        assert_eq!(t.get(3), b"<b>");
        assert_eq!(t.get(4), b"");
        assert_eq!(t.get(99), b"");
    }

    #[test]
    fn bpe_pieces_unmap_bytes() {
        // "Ġä½ł" is " 你" split into bytes: 20 E4 BD A0.
        let v = toy_vocab_scored(Kind::Bpe, &[("ĠäĽł", 1, 0.0), ("Ġä½ł", 1, 0.0), ("<|im_end|>", 3, 0.0)]);
        let t = TokenBytes::new(&v);
        assert_eq!(t.get(1), " 你".as_bytes());
        assert_eq!(t.get(2), b"<|im_end|>");
    }
}
