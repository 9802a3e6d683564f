//! The `[guard]` configuration: what to detect, what to do with it, which lexicons to load.
//!
//! Every table denies unknown fields, so a typo is an error naming the field instead of a
//! silently ignored setting. Entity types and actions are enums, so serde's errors name the bad
//! value and list the accepted ones.
//!
//! ```toml
//! [guard.input]
//! pii = true
//! lexicon = true
//!
//! [guard.output]
//! lexicon = true
//! pii = false
//!
//! [guard.pii]
//! hash_key = "a long random secret"
//! restore_pseudonyms = true
//! entities = { CN_ID = "hash", CN_MOBILE = { action = "mask", keep_start = 3, keep_end = 4 }, IPV4 = "allow" }
//!
//! [[guard.lexicons]]
//! category = "politics"
//! action = "block"
//! path = "lexicons/politics.txt"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::pii::EntityType;

/// Everything under `[guard]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Checks on requests (prompts, messages).
    pub input: InputConfig,
    /// Checks on answers, including streamed ones.
    pub output: OutputConfig,
    pub pii: PiiConfig,
    pub lexicons: Vec<LexiconConfig>,
}

impl GuardConfig {
    /// Makes relative lexicon paths relative to `base` (the directory of the config file).
    pub fn resolve_paths(&mut self, base: &Path) {
        for lexicon in &mut self.lexicons {
            if let Some(path) = &lexicon.path {
                if path.is_relative() {
                    lexicon.path = Some(base.join(path));
                }
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// `[guard.input]`: which checks run on requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Detect PII and apply the per-entity actions (default on).
    #[serde(default = "yes")]
    pub pii: bool,
    /// Apply the sensitive-word lexicons (default on).
    #[serde(default = "yes")]
    pub lexicon: bool,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { pii: true, lexicon: true }
    }
}

/// `[guard.output]`: which checks run on answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Apply the PII actions to answers too (default off: it would also mask values the user
    /// gave and expects back; `block` ends the answer).
    #[serde(default)]
    pub pii: bool,
    /// Apply the sensitive-word lexicons (default on).
    #[serde(default = "yes")]
    pub lexicon: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { pii: false, lexicon: true }
    }
}

/// `[guard.pii]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Findings below this confidence (0..1) are ignored. Checksummed forms score 0.9+, the
    /// structural ones (legacy 15-digit IDs, passports) 0.7-0.75, unknown-issuer cards 0.6.
    pub min_confidence: f32,
    /// Secret for `hash` pseudonyms (at least 16 characters). Without one, a random key is drawn
    /// at startup and pseudonyms change when the process restarts.
    pub hash_key: Option<String>,
    /// Keep, per request, the pseudonym -> value map so an answer can be restored.
    pub restore_pseudonyms: bool,
    /// The character that replaces masked characters.
    pub mask_char: char,
    /// Per-entity actions; entities not listed keep their defaults ([`crate::default_rule`]).
    pub entities: BTreeMap<EntityType, EntityRule>,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            min_confidence: 0.5,
            hash_key: None,
            restore_pseudonyms: false,
            mask_char: '*',
            entities: BTreeMap::new(),
        }
    }
}

/// What to do with one kind of PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Replace the middle with the mask character, keeping `keep_start`/`keep_end` characters.
    Mask,
    /// Replace with a keyed pseudonym `<CN_ID:3f9a1c2e>` (stable per value and key).
    Hash,
    /// Replace with the entity name `<CN_ID>`.
    Redact,
    /// Refuse the whole text.
    Block,
    /// Leave it (still counted in the audit).
    Allow,
}

impl PiiAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiAction::Mask => "mask",
            PiiAction::Hash => "hash",
            PiiAction::Redact => "redact",
            PiiAction::Block => "block",
            PiiAction::Allow => "allow",
        }
    }
}

/// An entity's action, written either as `"hash"` or as
/// `{ action = "mask", keep_start = 3, keep_end = 4 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityRule {
    pub action: PiiAction,
    /// Characters (letters and digits; for emails, of the local part) left visible at the start.
    pub keep_start: Option<usize>,
    /// Characters left visible at the end (not used for emails).
    pub keep_end: Option<usize>,
}

impl EntityRule {
    pub fn new(action: PiiAction) -> EntityRule {
        EntityRule { action, keep_start: None, keep_end: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityRuleTable {
    action: PiiAction,
    keep_start: Option<usize>,
    keep_end: Option<usize>,
}

impl<'de> Deserialize<'de> for EntityRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;

        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = EntityRule;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an action (mask, hash, redact, block, allow) or a table with `action`")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<EntityRule, E> {
                PiiAction::deserialize(de::value::StrDeserializer::<E>::new(s)).map(EntityRule::new)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EntityRule, A::Error> {
                let t = EntityRuleTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EntityRule { action: t.action, keep_start: t.keep_start, keep_end: t.keep_end })
            }
        }

        deserializer.deserialize_any(RuleVisitor)
    }
}

/// What a lexicon does when one of its terms appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LexiconAction {
    /// Refuse the request, or stop the streamed answer.
    Block,
    /// Replace the term with mask characters.
    Mask,
    /// Leave the text, record the hit in the audit.
    Flag,
}

impl LexiconAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LexiconAction::Block => "block",
            LexiconAction::Mask => "mask",
            LexiconAction::Flag => "flag",
        }
    }
}

/// One `[[guard.lexicons]]` entry: a term list file and/or inline terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LexiconConfig {
    /// Reported in audits and block reasons (never the matched term).
    pub category: String,
    pub action: LexiconAction,
    /// One term per line, `#` comments, blank lines ignored.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub terms: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        guard: GuardConfig,
    }

    fn parse(s: &str) -> Result<GuardConfig, String> {
        toml::from_str::<File>(s).map(|f| f.guard).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_from_an_empty_table() {
        let c = parse("[guard]").unwrap();
        assert!(c.lexicons.is_empty());
        assert_eq!(c.pii.min_confidence, 0.5);
        assert!(c.pii.entities.is_empty());
        assert!(c.input.pii && c.input.lexicon);
        assert!(c.output.lexicon && !c.output.pii);
        let c = parse("[guard.input]\nlexicon = false").unwrap();
        assert!(c.input.pii && !c.input.lexicon, "an omitted field keeps its own default");
    }

    #[test]
    fn entity_rules_short_and_long_form() {
        let c = parse(
            r#"
            [guard.pii.entities]
            CN_ID = "redact"
            CN_MOBILE = { action = "mask", keep_start = 2, keep_end = 2 }
            "#,
        )
        .unwrap();
        assert_eq!(c.pii.entities[&EntityType::CnId], EntityRule::new(PiiAction::Redact));
        let mobile = c.pii.entities[&EntityType::CnMobile];
        assert_eq!((mobile.action, mobile.keep_start, mobile.keep_end), (PiiAction::Mask, Some(2), Some(2)));
    }

    #[test]
    fn errors_name_the_bad_entity_or_action() {
        let e = parse("[guard.pii.entities]\nCN_IDX = \"hash\"").unwrap_err();
        assert!(e.contains("CN_IDX") && e.contains("CN_ID"), "{e}");
        let e = parse("[guard.pii.entities]\nCN_ID = \"shred\"").unwrap_err();
        assert!(e.contains("shred") && e.contains("redact"), "{e}");
        let e = parse("[guard.pii.entities]\nCN_ID = { action = \"mask\", keep = 3 }").unwrap_err();
        assert!(e.contains("keep"), "{e}");
        let e = parse("[[guard.lexicons]]\ncategory = \"x\"\naction = \"delete\"").unwrap_err();
        assert!(e.contains("delete") && e.contains("flag"), "{e}");
        let e = parse("[guard.pii]\nmin_confidnce = 0.2").unwrap_err();
        assert!(e.contains("min_confidnce"), "{e}");
    }

    #[test]
    fn relative_lexicon_paths_resolve_against_the_config_dir() {
        let mut c = parse("[[guard.lexicons]]\ncategory = \"x\"\naction = \"flag\"\npath = \"words.txt\"").unwrap();
        c.resolve_paths(Path::new("/etc/luodi"));
        assert_eq!(c.lexicons[0].path.as_deref(), Some(Path::new("/etc/luodi/words.txt")));
    }
}
