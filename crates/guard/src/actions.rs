//! Turning findings into edits: the per-entity policy (mask, hash, redact, block, allow) and
//! the splice that applies edits to the original text.

use std::borrow::Cow;
use std::ops::Range;

use crate::audit::{Audit, AuditAction, Blocked};
use crate::config::{EntityRule, PiiAction, PiiConfig};
use crate::error::GuardError;
use crate::pii::{EntityType, Finding};
use crate::pseudonym::{PseudonymKey, PseudonymMap};

/// The built-in rule for an entity: identifiers that single out a person or an account are
/// hashed (the model can still refer to "the same card"), contact details are masked so the
/// model sees their shape, organization codes (public registry data) are allowed.
pub fn default_rule(entity: EntityType) -> (PiiAction, usize, usize) {
    use EntityType::*;
    match entity {
        CnId => (PiiAction::Hash, 3, 4),
        CnMobile => (PiiAction::Mask, 3, 4),
        CnPhone => (PiiAction::Mask, 0, 4),
        BankCard | CreditCard => (PiiAction::Hash, 4, 4),
        Email => (PiiAction::Mask, 1, 0),
        Ipv4 => (PiiAction::Mask, 3, 0),
        Ipv6 => (PiiAction::Redact, 4, 0),
        CnPassport => (PiiAction::Hash, 1, 3),
        CnUscc => (PiiAction::Allow, 6, 2),
        UsSsn => (PiiAction::Hash, 0, 4),
        Iban => (PiiAction::Hash, 4, 4),
    }
}

/// Whether a `block` stops the text or is softened to a redaction (file redaction cannot
/// refuse a line, it must still write something safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    Block,
    Redact,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    action: PiiAction,
    keep_start: usize,
    keep_end: usize,
}

/// The resolved PII policy: one rule per entity type, the pseudonym key, the mask character.
#[derive(Debug, Clone)]
pub struct PiiPolicy {
    rules: [Rule; EntityType::ALL.len()],
    key: PseudonymKey,
    ephemeral_key: bool,
    mask_char: char,
    min_confidence: f32,
    restore: bool,
}

impl PiiPolicy {
    pub fn from_config(config: &PiiConfig) -> Result<PiiPolicy, GuardError> {
        if !(0.0..=1.0).contains(&config.min_confidence) {
            return Err(GuardError::Pii {
                field: "min_confidence",
                message: format!("must be between 0 and 1, got {}", config.min_confidence),
            });
        }
        if config.mask_char.is_control() {
            return Err(GuardError::Pii { field: "mask_char", message: "must be a visible character".into() });
        }
        let rules = EntityType::ALL.map(|entity| {
            let (action, keep_start, keep_end) = default_rule(entity);
            Rule { action, keep_start, keep_end }
        });
        let mut policy = PiiPolicy {
            rules,
            key: match &config.hash_key {
                Some(key) if key.len() < 16 => {
                    return Err(GuardError::Pii {
                        field: "hash_key",
                        message: "must be at least 16 characters (it keys the pseudonyms)".into(),
                    })
                }
                Some(key) => PseudonymKey::new(key.as_bytes()),
                None => PseudonymKey::random(),
            },
            ephemeral_key: config.hash_key.is_none(),
            mask_char: config.mask_char,
            min_confidence: config.min_confidence,
            restore: config.restore_pseudonyms,
        };
        for (&entity, rule) in &config.entities {
            policy.set_rule(entity, *rule)?;
        }
        Ok(policy)
    }

    /// Overrides one entity's rule (keeping the default keep counts where `rule` has none).
    pub fn set_rule(&mut self, entity: EntityType, rule: EntityRule) -> Result<(), GuardError> {
        if rule.action != PiiAction::Mask && (rule.keep_start.is_some() || rule.keep_end.is_some()) {
            return Err(GuardError::Entity {
                entity,
                message: format!("keep_start/keep_end only apply to action `mask`, not `{}`", rule.action.as_str()),
            });
        }
        let slot = &mut self.rules[entity.index()];
        slot.action = rule.action;
        slot.keep_start = rule.keep_start.unwrap_or(slot.keep_start);
        slot.keep_end = rule.keep_end.unwrap_or(slot.keep_end);
        Ok(())
    }

    pub fn action(&self, entity: EntityType) -> PiiAction {
        self.rules[entity.index()].action
    }

    pub fn mask_char(&self) -> char {
        self.mask_char
    }

    pub fn min_confidence(&self) -> f32 {
        self.min_confidence
    }

    /// True when no `hash_key` was configured and pseudonyms use a per-process random key.
    pub fn has_ephemeral_key(&self) -> bool {
        self.ephemeral_key
    }

    /// Whether requests should keep a [`PseudonymMap`] to restore answers.
    pub fn restores_pseudonyms(&self) -> bool {
        self.restore
    }

    /// The pseudonym `hash` would write for `value`.
    pub fn pseudonym(&self, entity: EntityType, value: &str) -> String {
        self.key.pseudonym(entity, value)
    }

    /// What `mask` would write for `value`.
    pub fn mask(&self, entity: EntityType, value: &str) -> String {
        let rule = self.rules[entity.index()];
        mask_value(entity, value, rule.keep_start, rule.keep_end, self.mask_char)
    }

    /// The edits for `findings` in `text` (sorted, non-overlapping), recording each decision.
    /// A `block` (in [`BlockMode::Block`]) returns only the block, with nothing else recorded.
    pub fn edits(
        &self,
        text: &str,
        findings: &[Finding],
        mode: BlockMode,
        mut pseudonyms: Option<&mut PseudonymMap>,
        audit: &mut Audit,
    ) -> Result<Vec<Edit>, Blocked> {
        if mode == BlockMode::Block {
            if let Some(f) = findings.iter().find(|f| self.action(f.entity) == PiiAction::Block) {
                audit.record(f.entity.as_str(), AuditAction::Block, f.rule);
                return Err(Blocked { subject: f.entity.as_str().to_owned(), rule: f.rule.to_owned() });
            }
        }
        let mut edits = Vec::with_capacity(findings.len());
        for f in findings {
            let value = &text[f.bytes.clone()];
            let (replacement, action) = match self.action(f.entity) {
                PiiAction::Allow => {
                    audit.record(f.entity.as_str(), AuditAction::Allow, f.rule);
                    continue;
                }
                PiiAction::Mask => (self.mask(f.entity, value), AuditAction::Mask),
                PiiAction::Hash => match pseudonyms.as_deref_mut() {
                    Some(map) => (map.pseudonymize(&self.key, f.entity, value), AuditAction::Hash),
                    None => (self.key.pseudonym(f.entity, value), AuditAction::Hash),
                },
                PiiAction::Redact | PiiAction::Block => (redaction(f.entity), AuditAction::Redact),
            };
            audit.record(f.entity.as_str(), action, f.rule);
            edits.push(Edit { range: f.bytes.clone(), replacement });
        }
        Ok(edits)
    }
}

/// `<CN_ID>`.
pub fn redaction(entity: EntityType) -> String {
    format!("<{entity}>")
}

/// The fewest characters a mask hides before it hides the whole value.
pub const MIN_MASKED: usize = 4;

/// Masks `value`: letters and digits other than the first `keep_start` and last `keep_end`
/// become `mask_char`, other characters (spaces, dashes, `+`, dots) stay so the shape remains.
/// If fewer than [`MIN_MASKED`] would be masked, everything is (a short value must not end up
/// nearly visible). Emails keep `keep_start`
/// characters of the local part, then `***` (hiding its length), then the domain.
pub fn mask_value(entity: EntityType, value: &str, keep_start: usize, keep_end: usize, mask_char: char) -> String {
    if entity == EntityType::Email {
        if let Some(at) = value.find(['@', '＠']) {
            let local = &value[..at];
            let keep = if local.chars().count() > keep_start { keep_start } else { 0 };
            let mut out: String = local.chars().take(keep).collect();
            out.extend(std::iter::repeat_n(mask_char, 3));
            out.push_str(&value[at..]);
            return out;
        }
    }
    let total = value.chars().filter(|c| c.is_alphanumeric()).count();
    let visible = keep_start + keep_end;
    let (keep_start, keep_end) = if visible + MIN_MASKED > total { (0, 0) } else { (keep_start, keep_end) };
    let mut index = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            let keep = index < keep_start || index >= total - keep_end;
            index += 1;
            if keep {
                c
            } else {
                mask_char
            }
        })
        .collect()
}

/// Replace `range` (original bytes) with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: String,
}

/// Applies edits to `text`. Overlapping edits (a masked lexicon term across a PII value) are
/// merged into one masked range so no part of either leaks.
pub fn apply_edits<'a>(text: &'a str, mut edits: Vec<Edit>, mask_char: char) -> Cow<'a, str> {
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut merged: Vec<Edit> = Vec::with_capacity(edits.len());
    for edit in edits {
        match merged.last_mut() {
            Some(last) if edit.range.start < last.range.end => {
                let range = last.range.start..last.range.end.max(edit.range.end);
                let replacement = std::iter::repeat_n(mask_char, text[range.clone()].chars().count()).collect();
                *last = Edit { range, replacement };
            }
            _ => merged.push(edit),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for edit in merged {
        out.push_str(&text[pos..edit.range.start]);
        out.push_str(&edit.replacement);
        pos = edit.range.end;
    }
    out.push_str(&text[pos..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_shape() {
        use EntityType::*;
        assert_eq!(mask_value(CnId, "110105194912310021", 3, 4, '*'), "110***********0021");
        assert_eq!(mask_value(CnMobile, "13800138000", 3, 4, '*'), "138****8000");
        assert_eq!(mask_value(CnMobile, "138 0013 8000", 3, 4, '*'), "138 **** 8000");
        assert_eq!(mask_value(Email, "zhang@example.com", 1, 0, '*'), "z***@example.com");
        assert_eq!(mask_value(Email, "z@example.com", 1, 0, '*'), "***@example.com");
        assert_eq!(mask_value(Ipv4, "1.2.3.4", 3, 0, '#'), "#.#.#.#", "keeping 3 of 4 would reveal it");
        assert_eq!(mask_value(Ipv4, "192.168.1.10", 3, 0, '*'), "192.***.*.**");
        assert_eq!(mask_value(CnMobile, "１３８００１３８０００", 3, 4, '*'), "１３８****８０００");
    }

    #[test]
    fn edits_splice_and_merge() {
        let text = "ab敏感cd";
        let edits = vec![Edit { range: 2..8, replacement: "**".into() }];
        assert_eq!(apply_edits(text, edits, '*'), "ab**cd");
        let edits =
            vec![Edit { range: 0..2, replacement: "<X>".into() }, Edit { range: 1..5, replacement: "*".into() }];
        assert_eq!(apply_edits(text, edits, '*'), "***感cd");
        assert!(matches!(apply_edits(text, vec![], '*'), Cow::Borrowed(_)));
    }

    #[test]
    fn keep_counts_only_for_mask() {
        let mut policy = PiiPolicy::from_config(&PiiConfig::default()).unwrap();
        let rule = EntityRule { action: PiiAction::Hash, keep_start: Some(1), keep_end: None };
        let err = policy.set_rule(EntityType::CnId, rule).unwrap_err().to_string();
        assert!(err.contains("CN_ID") && err.contains("hash"), "{err}");
    }

    #[test]
    fn short_hash_keys_are_rejected() {
        let config = PiiConfig { hash_key: Some("short".into()), ..PiiConfig::default() };
        assert!(PiiPolicy::from_config(&config).unwrap_err().to_string().contains("hash_key"));
    }
}
