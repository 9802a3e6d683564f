//! Sensitive-word lexicons compiled into one Aho-Corasick automaton.
//!
//! Terms and texts go through the same [`Normalized::for_lexicon`] (width, case, traditional to
//! simplified, evasion separators), so `敏 感 詞`, `ＢＡＤ` and `b.a.d` hit the terms `敏感词`
//! and `bad`. Terms that begin or end with a Latin letter or digit only match on a word
//! boundary, so `ass` does not fire inside `class`; CJK terms match anywhere (CJK has no spaces
//! to mark words).

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::config::{LexiconAction, LexiconConfig};
use crate::error::GuardError;
use crate::normalize::Normalized;

/// A term list before compilation: where it came from and what it does.
#[derive(Debug, Clone)]
pub struct LexiconSource {
    pub category: String,
    pub action: LexiconAction,
    /// Names the list in rule ids (`name:line`), e.g. the file name.
    pub name: String,
    /// One term per line; `#` starts a comment line; blank lines are ignored.
    pub text: String,
}

impl LexiconSource {
    /// Reads a `[[guard.lexicons]]` entry: its file (if any) followed by its inline terms.
    pub fn from_config(config: &LexiconConfig) -> Result<LexiconSource, GuardError> {
        if config.category.trim().is_empty() {
            return Err(GuardError::Lexicon { category: config.category.clone(), message: "category is empty".into() });
        }
        let mut text = String::new();
        let mut name = "inline".to_owned();
        if let Some(path) = &config.path {
            text = std::fs::read_to_string(path).map_err(|source| GuardError::LexiconRead {
                category: config.category.clone(),
                path: path.clone(),
                source,
            })?;
            name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
            if !text.ends_with('\n') && !text.is_empty() {
                text.push('\n');
            }
        } else if config.terms.is_empty() {
            return Err(GuardError::Lexicon {
                category: config.category.clone(),
                message: "needs `path` or `terms`".into(),
            });
        }
        for term in &config.terms {
            text.push_str(term);
            text.push('\n');
        }
        Ok(LexiconSource { category: config.category.clone(), action: config.action, name, text })
    }
}

/// The terms of a list with their 1-based line numbers.
pub fn parse_terms(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

#[derive(Debug, Clone)]
struct List {
    category: String,
    action: LexiconAction,
    name: String,
}

#[derive(Debug, Clone)]
struct Term {
    list: usize,
    line: usize,
    /// The term starts/ends with an ASCII letter or digit, so it needs a word boundary there.
    bounded_start: bool,
    bounded_end: bool,
}

/// One term occurrence, in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexMatch<'a> {
    pub bytes: Range<usize>,
    pub category: &'a str,
    pub action: LexiconAction,
    /// `list-name:line` of the term.
    pub rule: String,
}

/// All lexicons of a guard, compiled.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    automaton: Option<AhoCorasick>,
    lists: Vec<List>,
    terms: Vec<Term>,
    max_term_chars: usize,
}

impl Lexicon {
    pub fn new(sources: &[LexiconSource]) -> Result<Lexicon, GuardError> {
        let mut lexicon = Lexicon::default();
        let mut patterns = Vec::new();
        for (list, source) in sources.iter().enumerate() {
            lexicon.lists.push(List {
                category: source.category.clone(),
                action: source.action,
                name: source.name.clone(),
            });
            for (line, term) in parse_terms(&source.text) {
                let normalized = Normalized::for_lexicon(term).as_str().to_owned();
                let Some(first) = normalized.chars().next() else { continue };
                let last = normalized.chars().next_back().unwrap_or(first);
                lexicon.max_term_chars = lexicon.max_term_chars.max(normalized.chars().count());
                lexicon.terms.push(Term {
                    list,
                    line,
                    bounded_start: first.is_ascii_alphanumeric(),
                    bounded_end: last.is_ascii_alphanumeric(),
                });
                patterns.push(normalized);
            }
        }
        if !patterns.is_empty() {
            let automaton =
                AhoCorasickBuilder::new().match_kind(MatchKind::Standard).build(&patterns).map_err(|e| {
                    GuardError::Lexicon { category: "*".into(), message: format!("cannot build the automaton: {e}") }
                })?;
            lexicon.automaton = Some(automaton);
        }
        Ok(lexicon)
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// The longest term, in normalized characters.
    pub fn max_term_chars(&self) -> usize {
        self.max_term_chars
    }

    /// Term occurrences in `text`, sorted by start. Where occurrences overlap, one inside a
    /// longer occurrence with an equal or stronger action is dropped (`敏感` inside `敏感词`).
    pub fn find(&self, text: &str) -> Vec<LexMatch<'_>> {
        let Some(automaton) = &self.automaton else { return Vec::new() };
        let normalized = Normalized::for_lexicon(text);
        let hay = normalized.as_str();
        let mut found: Vec<(Range<usize>, usize)> = Vec::new();
        for m in automaton.find_overlapping_iter(hay) {
            let term = &self.terms[m.pattern().as_usize()];
            let before = hay[..m.start()].chars().next_back();
            let after = hay[m.end()..].chars().next();
            if term.bounded_start && before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            if term.bounded_end && after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            found.push((m.range(), m.pattern().as_usize()));
        }
        found.sort_by(|a, b| a.0.start.cmp(&b.0.start).then(b.0.end.cmp(&a.0.end)));
        let strength = |t: usize| match self.lists[self.terms[t].list].action {
            LexiconAction::Block => 2,
            LexiconAction::Mask => 1,
            LexiconAction::Flag => 0,
        };
        let mut kept: Vec<(Range<usize>, usize)> = Vec::with_capacity(found.len());
        for (range, term) in found {
            let covered = kept.iter().any(|(r, t)| {
                r.start <= range.start && range.end <= r.end && strength(*t) >= strength(term) && *r != range
            });
            if !covered {
                kept.push((range, term));
            }
        }
        kept.into_iter()
            .map(|(range, t)| {
                let term = &self.terms[t];
                let list = &self.lists[term.list];
                LexMatch {
                    bytes: normalized.to_original(range),
                    category: &list.category,
                    action: list.action,
                    rule: format!("{}:{}", list.name, term.line),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon(lists: &[(&str, LexiconAction, &str)]) -> Lexicon {
        let sources: Vec<LexiconSource> = lists
            .iter()
            .map(|(category, action, text)| LexiconSource {
                category: category.to_string(),
                action: *action,
                name: format!("{category}.txt"),
                text: text.to_string(),
            })
            .collect();
        Lexicon::new(&sources).unwrap()
    }

    fn hits<'a>(lex: &Lexicon, text: &'a str) -> Vec<&'a str> {
        lex.find(text).into_iter().map(|m| &text[m.bytes]).collect()
    }

    #[test]
    fn parses_comments_and_blank_lines() {
        let terms: Vec<_> = parse_terms("# header\n\n敏感词\n  bad  \n# more\nworse\n").collect();
        assert_eq!(terms, vec![(3, "敏感词"), (4, "bad"), (6, "worse")]);
    }

    #[test]
    fn evasions_are_caught() {
        let lex = lexicon(&[("test", LexiconAction::Block, "敏感词\nbad\n")]);
        assert_eq!(hits(&lex, "这是敏感词"), vec!["敏感词"]);
        assert_eq!(hits(&lex, "这是敏感詞"), vec!["敏感詞"], "traditional");
        assert_eq!(hits(&lex, "这是敏＊感＊词！"), vec!["敏＊感＊词"], "full-width separators");
        assert_eq!(hits(&lex, "这是敏 感 词"), vec!["敏 感 词"]);
        assert_eq!(hits(&lex, "这是敏\u{200B}感词"), vec!["敏\u{200B}感词"], "zero-width space");
        assert_eq!(hits(&lex, "so BAD."), vec!["BAD"]);
        assert_eq!(hits(&lex, "so ＢＡＤ"), vec!["ＢＡＤ"], "full-width letters");
        assert_eq!(hits(&lex, "b.a.d!"), vec!["b.a.d"]);
        assert_eq!(hits(&lex, "b a d"), vec!["b a d"]);
        assert_eq!(hits(&lex, "b-a-d guy"), vec!["b-a-d"]);
    }

    #[test]
    fn english_word_boundaries() {
        let lex = lexicon(&[("test", LexiconAction::Flag, "ass\nbad word\n")]);
        assert!(hits(&lex, "first class passage").is_empty());
        assert!(hits(&lex, "a s sembly").is_empty(), "`s sembly` is not a run of single letters");
        assert_eq!(hits(&lex, "you ass!"), vec!["ass"]);
        assert_eq!(hits(&lex, "a bad word here"), vec!["bad word"]);
        assert!(hits(&lex, "a badword here").is_empty());
        assert!(hits(&lex, "bad w ord").is_empty());
    }

    #[test]
    fn chinese_clauses_are_not_joined() {
        let lex = lexicon(&[("test", LexiconAction::Block, "敏感\n")]);
        assert!(hits(&lex, "他过敏，感冒了").is_empty());
        assert!(hits(&lex, "他过敏。感冒了").is_empty());
    }

    #[test]
    fn nested_terms_keep_the_longest_equal_or_stronger() {
        let lex = lexicon(&[("a", LexiconAction::Flag, "敏感\n敏感词\n"), ("b", LexiconAction::Block, "感词\n")]);
        let found = lex.find("敏感词");
        let summary: Vec<_> = found.iter().map(|m| (m.category, m.rule.as_str())).collect();
        assert_eq!(summary, vec![("a", "a.txt:2"), ("b", "b.txt:1")]);
    }

    #[test]
    fn sources_from_config() {
        let dir = std::env::temp_dir().join(format!("luodi-guard-lex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("words.txt");
        std::fs::write(&path, "# list\nfoo").unwrap();
        let config = LexiconConfig {
            category: "c".into(),
            action: LexiconAction::Mask,
            path: Some(path.clone()),
            terms: vec!["bar".into()],
        };
        let source = LexiconSource::from_config(&config).unwrap();
        assert_eq!((source.name.as_str(), source.text.as_str()), ("words.txt", "# list\nfoo\nbar\n"));
        let missing = LexiconConfig { path: Some(dir.join("nope.txt")), ..config.clone() };
        let err = LexiconSource::from_config(&missing).unwrap_err().to_string();
        assert!(err.contains("`c`") && err.contains("nope.txt"), "{err}");
        let empty = LexiconConfig { path: None, terms: vec![], ..config };
        assert!(LexiconSource::from_config(&empty).unwrap_err().to_string().contains("path"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
