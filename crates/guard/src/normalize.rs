//! Normalization with an offset map back to the original text.
//!
//! Detection runs on a normalized copy (full-width folded, invisible characters dropped, and for
//! lexicons lowercased, simplified and with evasion separators removed), but every span that
//! leaves this crate must point into the text the caller gave us. So each normalized byte
//! remembers the original byte range of the character that produced it.

use std::ops::Range;

use crate::t2s;

/// A normalized copy of a text and the map from its bytes back to the original.
#[derive(Debug, Clone)]
pub struct Normalized {
    text: String,
    /// Per normalized byte: the original byte range of the char that produced it. Empty when the
    /// normalization was the identity (the common case for plain text), to save the allocation.
    src: Vec<(u32, u32)>,
}

/// Characters that carry no text and are dropped everywhere: zero-width space/joiners, word
/// joiner, BOM, soft hyphen. They are a classic way to split a word or a number invisibly.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// Full-width ASCII (U+FF01..FF5E) to ASCII, ideographic and no-break spaces to a space, and the
/// Unicode dashes to `-`. One char in, one char out.
pub fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' | '\u{00A0}' | '\u{202F}' => ' ',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' => '-',
        _ => c,
    }
}

impl Normalized {
    /// The identity normalization.
    fn identity(text: &str) -> Normalized {
        Normalized { text: text.to_owned(), src: Vec::new() }
    }

    fn with_capacity(len: usize) -> Normalized {
        Normalized { text: String::with_capacity(len), src: Vec::with_capacity(len) }
    }

    fn push(&mut self, c: char, src: Range<usize>) {
        self.text.push(c);
        let entry = (to_u32(src.start), to_u32(src.end));
        self.src.extend(std::iter::repeat_n(entry, c.len_utf8()));
    }

    /// Normalization for PII recognizers: width folding and invisible characters only, so the
    /// regexes see ASCII digits and letters wherever the user typed full-width ones.
    pub fn for_pii(text: &str) -> Normalized {
        if !text.chars().any(|c| is_invisible(c) || fold_width(c) != c) {
            return Normalized::identity(text);
        }
        let mut out = Normalized::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if !is_invisible(c) {
                out.push(fold_width(c), i..i + c.len_utf8());
            }
        }
        out
    }

    /// Normalization for sensitive-word matching: width folding, lowercase, traditional to
    /// simplified, invisible characters dropped, and evasion separators removed between
    /// single-character tokens (see [`is_separator`] and [`Normalized::for_lexicon`]'s rule).
    ///
    /// The separator rule: a run of at most [`MAX_SEPARATOR_RUN`] separators is removed when
    /// the characters on both sides are single-character tokens: a CJK character, or a letter or
    /// digit whose other neighbour is not a letter or digit. So `敏*感`, `敏 感`, `b.a.d` and
    /// `b a d` collapse, while `bad word`, `a bad` and `e-mail` keep their separators and cannot
    /// glue two English words into a term. The trade-off: a sentence of spaced single letters
    /// (`I a m`) is read as one word; terms are matched on word boundaries, which limits it.
    pub fn for_lexicon(text: &str) -> Normalized {
        let mut units: Vec<(char, u32, u32)> = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if is_invisible(c) {
                continue;
            }
            let (start, end) = (to_u32(i), to_u32(i + c.len_utf8()));
            if c.is_ascii() {
                units.push((c.to_ascii_lowercase(), start, end));
                continue;
            }
            let folded = t2s::to_simplified(fold_width(c));
            if folded.is_uppercase() {
                units.extend(folded.to_lowercase().map(|l| (l, start, end)));
            } else {
                units.push((folded, start, end));
            }
        }
        let mut out = Normalized::with_capacity(text.len());
        let mut i = 0;
        while i < units.len() {
            let (c, start, end) = units[i];
            if is_separator(c) && i > 0 {
                let run_end = units[i..].iter().position(|u| !is_separator(u.0)).map_or(units.len(), |p| i + p);
                if run_end < units.len()
                    && run_end - i <= MAX_SEPARATOR_RUN
                    && single(&units, i - 1)
                    && single(&units, run_end)
                {
                    i = run_end;
                    continue;
                }
            }
            out.push(c, start as usize..end as usize);
            i += 1;
        }
        out
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Maps a non-empty byte range of the normalized text (on char boundaries) to the original.
    pub fn to_original(&self, range: Range<usize>) -> Range<usize> {
        if self.src.is_empty() {
            return range;
        }
        debug_assert!(range.start < range.end && range.end <= self.text.len());
        self.src[range.start].0 as usize..self.src[range.end - 1].1 as usize
    }
}

/// Separator runs longer than this are taken as real spacing, not evasion.
pub const MAX_SEPARATOR_RUN: usize = 3;

/// Characters used to split a word so a filter misses it (`敏*感`, `b.a.d`, `b-a-d`). Sentence
/// punctuation (`,` from `，`, `。`, `、`) is deliberately absent: removing it would join the end
/// of one clause to the start of the next (`过敏，感冒` must not read as `敏感`). Newlines are
/// absent for the same reason across lines.
pub fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '*'
            | '.'
            | '-'
            | '_'
            | '~'
            | '|'
            | '/'
            | '\\'
            | '+'
            | '#'
            | '^'
            | '`'
            | '\''
            | '"'
            | '='
            | '·'
            | '•'
    )
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

/// Scripts written without spaces, where every character is its own token for our purposes.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // kana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3134F) // CJK extensions B..G
}

/// Whether unit `i` is a single-character token (see [`Normalized::for_lexicon`]).
fn single(units: &[(char, u32, u32)], i: usize) -> bool {
    let c = units[i].0;
    if is_cjk(c) {
        return true;
    }
    if !is_word(c) {
        return false;
    }
    let left_word = i > 0 && is_word(units[i - 1].0);
    let right_word = units.get(i + 1).is_some_and(|u| is_word(u.0));
    !left_word && !right_word
}

fn to_u32(n: usize) -> u32 {
    // Offsets are stored as u32 to halve the map; callers scan line by line or per request body.
    u32::try_from(n).expect("luodi-guard normalizes texts up to 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> String {
        Normalized::for_lexicon(s).as_str().to_owned()
    }

    #[test]
    fn pii_folds_full_width_and_maps_back() {
        let text = "电话１３８００１３８０００。";
        let n = Normalized::for_pii(text);
        assert_eq!(n.as_str(), "电话13800138000。");
        let start = n.as_str().find('1').unwrap();
        let orig = n.to_original(start..start + 11);
        assert_eq!(&text[orig], "１３８００１３８０００");
    }

    #[test]
    fn pii_identity_for_plain_text() {
        let n = Normalized::for_pii("plain 中文 13800138000");
        assert!(n.src.is_empty());
        assert_eq!(n.to_original(6..12), 6..12);
    }

    #[test]
    fn pii_drops_invisible_characters() {
        let text = "138\u{200B}0013\u{FEFF}8000";
        let n = Normalized::for_pii(text);
        assert_eq!(n.as_str(), "13800138000");
        assert_eq!(n.to_original(0..11), 0..text.len());
    }

    #[test]
    fn lexicon_case_width_traditional() {
        assert_eq!(lex("ＢＡＤ Word"), "bad word");
        assert_eq!(lex("敏感詞"), "敏感词");
        assert_eq!(lex("ÀB"), "àb");
    }

    #[test]
    fn lexicon_removes_evasion_separators() {
        assert_eq!(lex("敏*感"), "敏感");
        assert_eq!(lex("敏 感 词"), "敏感词");
        assert_eq!(lex("b.a.d"), "bad");
        assert_eq!(lex("b a d"), "bad");
        assert_eq!(lex("b-a-d guy"), "bad guy");
        assert_eq!(lex("敏＊感"), "敏感");
        assert_eq!(lex("敏\u{200B}感"), "敏感");
    }

    #[test]
    fn lexicon_keeps_word_boundaries() {
        assert_eq!(lex("bad word"), "bad word");
        assert_eq!(lex("a bad"), "a bad");
        assert_eq!(lex("e-mail"), "e-mail");
        assert_eq!(lex("过敏，感冒"), "过敏,感冒");
        assert_eq!(lex("敏    感"), "敏    感", "a run longer than MAX_SEPARATOR_RUN is spacing");
        assert_eq!(lex("敏\n感"), "敏\n感");
    }

    #[test]
    fn lexicon_spans_cover_removed_separators() {
        let text = "说敏 * 感话";
        let n = Normalized::for_lexicon(text);
        assert_eq!(n.as_str(), "说敏感话");
        let start = n.as_str().find('敏').unwrap();
        let end = n.as_str().find('话').unwrap();
        assert_eq!(&text[n.to_original(start..end)], "敏 * 感");
    }
}
