//! Moderation of a streamed answer: text comes in as tokens, text goes out as soon as no term
//! or PII value that is still arriving could reach back into it.
//!
//! The moderator keeps the text not yet emitted plus a little already-emitted context (so "is
//! this number part of a longer one" and word boundaries see what came before). Once enough
//! text has arrived it emits everything except the last `hold` characters, where `hold` covers the longest
//! term with evasion separators between its characters (and 64 characters for PII). The cut
//! never falls inside a match, nor inside a token of letters, digits and `.@:+-_%` (a number or
//! an address still arriving), unless that token is far longer than the window.

use crate::actions::{apply_edits, BlockMode};
use crate::audit::{Audit, AuditAction, AuditEvent, Blocked};
use crate::config::LexiconAction;
use crate::guard::Guard;
use crate::normalize::{is_cjk, MAX_SEPARATOR_RUN};

/// Characters at the end whose normalization can still change with what follows (word
/// boundaries, separator collapsing): matches ending there are not acted on yet.
const SETTLE_CHARS: usize = 8;

/// Already-emitted characters kept as context: enough for word boundaries, separator
/// collapsing and "preceded by a digit" checks at the start of the unemitted text.
const CONTEXT_CHARS: usize = 16;

/// Text is moderated once at least this many characters beyond the window have arrived, so a
/// stream of one-character tokens does not rescan the window for every token.
const EMIT_BATCH_CHARS: usize = 8;

/// Window for PII in answers: longer than any recognized value with its separators (IBAN with
/// spaces 42, IPv6 45); e-mail addresses longer than this may be cut and missed.
const PII_HOLD_CHARS: usize = 64;

/// Moderates one streamed answer. Feed it with [`push`](Self::push) (or
/// [`push_bytes`](Self::push_bytes)), emit what it returns, call [`finish`](Self::finish) at
/// the end. After a block every call returns the same [`Blocked`] and nothing more is emitted.
#[derive(Debug)]
pub struct StreamModerator {
    guard: Guard,
    /// Emitted context (`..emitted`) followed by text not yet emitted.
    pending: String,
    emitted: usize,
    /// Bytes of a character split across `push_bytes` calls.
    utf8_tail: Vec<u8>,
    blocked: Option<Blocked>,
    audit: Audit,
    hold: usize,
    pii: bool,
    lexicon: bool,
}

impl StreamModerator {
    pub(crate) fn new(guard: Guard) -> StreamModerator {
        let inner = guard.inner();
        let lexicon = inner.output.lexicon && !inner.lexicon.is_empty();
        let pii = inner.output.pii;
        let mut hold = 0;
        if lexicon {
            hold = inner.lexicon.max_term_chars() * (1 + MAX_SEPARATOR_RUN) + SETTLE_CHARS;
        }
        if pii {
            hold = hold.max(PII_HOLD_CHARS);
        }
        StreamModerator {
            guard,
            pending: String::new(),
            emitted: 0,
            utf8_tail: Vec::new(),
            blocked: None,
            audit: Audit::default(),
            hold,
            pii,
            lexicon,
        }
    }

    /// How many characters may be held back (0 when output moderation is off).
    pub fn hold_chars(&self) -> usize {
        self.hold
    }

    /// Adds a chunk; returns the text that is now safe to emit (possibly empty).
    pub fn push(&mut self, chunk: &str) -> Result<String, Blocked> {
        if let Some(blocked) = &self.blocked {
            return Err(blocked.clone());
        }
        self.pending.push_str(chunk);
        self.process(false)
    }

    /// Like [`push`](Self::push) for raw bytes: a UTF-8 character split across calls is kept
    /// until complete; invalid bytes become U+FFFD.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<String, Blocked> {
        self.utf8_tail.extend_from_slice(bytes);
        let complete = self.utf8_tail.len() - incomplete_suffix(&self.utf8_tail);
        let ready: Vec<u8> = self.utf8_tail.drain(..complete).collect();
        self.push(&String::from_utf8_lossy(&ready))
    }

    /// Ends the answer: returns the rest, moderated with nothing more to wait for.
    pub fn finish(&mut self) -> Result<String, Blocked> {
        if let Some(blocked) = &self.blocked {
            return Err(blocked.clone());
        }
        let tail = std::mem::take(&mut self.utf8_tail);
        self.pending.push_str(&String::from_utf8_lossy(&tail));
        self.process(true)
    }

    /// The decisions taken on the emitted text so far (and the block, if any).
    pub fn audit(&self) -> &[AuditEvent] {
        self.audit.events()
    }

    pub fn blocked(&self) -> Option<&Blocked> {
        self.blocked.as_ref()
    }

    fn process(&mut self, last: bool) -> Result<String, Blocked> {
        let text = self.pending.as_str();
        let len = text.len();
        if self.emitted == len {
            return Ok(String::new());
        }
        if self.hold == 0 {
            let out = text[self.emitted..].to_owned();
            self.emitted = len;
            self.trim_context();
            return Ok(out);
        }
        let emitted = self.emitted;
        if !last && text[emitted..].chars().count() < self.hold + EMIT_BATCH_CHARS {
            // Nothing could be emitted yet; a block term in here is caught before any emission.
            return Ok(String::new());
        }
        let inner = self.guard.inner();
        let settle_end = if last { len } else { chars_back(text, len, SETTLE_CHARS) };

        let mut matches = if self.lexicon { inner.lexicon.find(text) } else { Vec::new() };
        // Matches in the emitted context were dealt with when it was emitted.
        matches.retain(|m| m.bytes.start >= emitted);
        if let Some(m) = matches.iter().find(|m| m.action == LexiconAction::Block && m.bytes.end <= settle_end) {
            self.audit.record(m.category, AuditAction::Block, &m.rule);
            return Err(self.block(Blocked { subject: m.category.to_owned(), rule: m.rule.clone() }));
        }
        let mut findings = if self.pii { self.guard.detect(text) } else { Vec::new() };
        findings.retain(|f| f.bytes.start >= emitted);

        let mut cut = if last { len } else { chars_back(text, len, self.hold).max(emitted) };
        if !last {
            loop {
                let before = cut;
                for range in matches.iter().map(|m| &m.bytes).chain(findings.iter().map(|f| &f.bytes)) {
                    if range.start < cut && cut < range.end {
                        cut = range.start;
                    }
                }
                let token = token_start(text, cut);
                if token <= emitted {
                    // The token reaches into emitted text: wait for its end, unless it is huge.
                    let fresh = text[emitted..].chars().count();
                    if fresh < 4 * self.hold {
                        cut = emitted;
                    }
                } else {
                    cut = token;
                }
                if cut == before {
                    break;
                }
            }
        }
        if cut <= emitted {
            return Ok(String::new());
        }
        matches.retain(|m| m.bytes.end <= cut);
        findings.retain(|f| f.bytes.end <= cut);
        let head = &text[..cut];
        let edits = match self.guard.edits(head, &matches, &findings, BlockMode::Block, None, &mut self.audit) {
            Ok(edits) => edits,
            Err(blocked) => return Err(self.block(blocked)),
        };
        let out = apply_edits(head, edits, inner.policy.mask_char())[emitted..].to_owned();
        self.emitted = cut;
        self.trim_context();
        Ok(out)
    }

    fn block(&mut self, blocked: Blocked) -> Blocked {
        self.blocked = Some(blocked.clone());
        self.pending = String::new();
        self.emitted = 0;
        blocked
    }

    /// Keeps at most [`CONTEXT_CHARS`] characters of emitted context.
    fn trim_context(&mut self) {
        let keep_from = chars_back(&self.pending, self.emitted, CONTEXT_CHARS);
        self.pending.drain(..keep_from);
        self.emitted -= keep_from;
    }
}

/// The byte offset `n` characters before `end` (0 if there are fewer).
fn chars_back(text: &str, end: usize, n: usize) -> usize {
    if n == 0 {
        return end;
    }
    text[..end].char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i)
}

fn is_token_char(c: char) -> bool {
    (c.is_alphanumeric() && !is_cjk(c)) || matches!(c, '.' | '@' | ':' | '+' | '-' | '_' | '%')
}

/// Where the token around `pos` starts: letters, digits, `.@:+-_%`, and single spaces between
/// digits (`138 0013 8000`). `pos` itself if it is not inside one.
fn token_start(text: &str, pos: usize) -> usize {
    let mut ahead = text[pos..].chars();
    let inside = match ahead.next() {
        Some(' ') => {
            text[..pos].chars().next_back().is_some_and(|c| c.is_ascii_digit())
                && ahead.next().is_some_and(|c| c.is_ascii_digit())
        }
        Some(c) => is_token_char(c),
        None => false,
    };
    if !inside {
        return pos;
    }
    let mut start = pos;
    let mut after = text[pos..].chars().next();
    let mut chars = text[..pos].char_indices().rev().peekable();
    while let Some((i, c)) = chars.next() {
        let joins_digits = c == ' '
            && after.is_some_and(|a| a.is_ascii_digit())
            && chars.peek().is_some_and(|&(_, b)| b.is_ascii_digit());
        if !(is_token_char(c) || joins_digits) {
            break;
        }
        start = i;
        after = Some(c);
    }
    start
}

/// How many bytes at the end of `bytes` are an incomplete UTF-8 character.
fn incomplete_suffix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bounds() {
        assert_eq!(token_start("电话138 0013", "电话138 0013".len()), "电话138 0013".len());
        let t = "电话138 0013 8000";
        let pos = t.find("13 8000").unwrap();
        assert_eq!(token_start(t, pos), "电话".len());
        let t = "mail zhang@exa";
        assert_eq!(token_start(t, t.len() - 1), 5);
        assert_eq!(token_start("ab cd", 3), 3);
        assert_eq!(token_start("ab cd", 2), 2, "a space not between digits is a boundary");
    }

    #[test]
    fn incomplete_utf8() {
        let s = "敏".as_bytes();
        assert_eq!(incomplete_suffix(&s[..1]), 1);
        assert_eq!(incomplete_suffix(&s[..2]), 2);
        assert_eq!(incomplete_suffix(s), 0);
        assert_eq!(incomplete_suffix(b"ab"), 0);
        assert_eq!(incomplete_suffix(&"😀".as_bytes()[..3]), 3);
    }

    #[test]
    fn chars_back_counts_chars() {
        assert_eq!(chars_back("ab敏感", 8, 1), 5);
        assert_eq!(chars_back("ab敏感", 8, 3), 1);
        assert_eq!(chars_back("ab敏感", 8, 10), 0);
        assert_eq!(chars_back("ab", 2, 0), 2);
    }
}
