//! Decisions as small records the server can log and count. They name the entity type or the
//! lexicon category, the action and the rule, and never carry the matched value.

use std::fmt;

use serde::Serialize;

/// What the guard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Mask,
    Hash,
    Redact,
    Block,
    Allow,
    Flag,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Mask => "mask",
            AuditAction::Hash => "hash",
            AuditAction::Redact => "redact",
            AuditAction::Block => "block",
            AuditAction::Allow => "allow",
            AuditAction::Flag => "flag",
        }
    }
}

/// One kind of decision and how often it was taken in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// A PII entity type (`CN_ID`) or a lexicon category (`politics`).
    pub subject: String,
    pub action: AuditAction,
    /// The recognizer rule (`cn_id.18`) or the lexicon term's `file:line`.
    pub rule: String,
    pub count: u32,
}

/// Collects events, merging repeats of the same (subject, action, rule).
#[derive(Debug, Clone, Default)]
pub struct Audit {
    events: Vec<AuditEvent>,
}

impl Audit {
    pub fn record(&mut self, subject: &str, action: AuditAction, rule: &str) {
        // Texts carry a handful of distinct decisions; a linear search beats hashing here.
        match self.events.iter_mut().find(|e| e.action == action && e.subject == subject && e.rule == rule) {
            Some(e) => e.count += 1,
            None => {
                self.events.push(AuditEvent { subject: subject.to_owned(), action, rule: rule.to_owned(), count: 1 })
            }
        }
    }

    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    pub fn into_events(self) -> Vec<AuditEvent> {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Why a text was refused. Names the entity type or category and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub subject: String,
    pub rule: String,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocked by the guard: {} (rule {})", self.subject, self.rule)
    }
}

impl std::error::Error for Blocked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_once() {
        let mut audit = Audit::default();
        audit.record("CN_ID", AuditAction::Hash, "cn_id.18");
        audit.record("CN_ID", AuditAction::Hash, "cn_id.18");
        audit.record("CN_ID", AuditAction::Hash, "cn_id.15");
        audit.record("politics", AuditAction::Flag, "words.txt:3");
        let events = audit.events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].count, 2);
        let json = serde_json::to_string(&events[0]).unwrap();
        assert_eq!(json, r#"{"subject":"CN_ID","action":"hash","rule":"cn_id.18","count":2}"#);
    }
}
