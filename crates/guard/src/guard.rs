//! [`Guard`]: the configured chain (lexicons, then PII) that the server runs on requests and
//! answers, and the file scanner runs on lines.

use std::borrow::Cow;
use std::sync::Arc;

use crate::actions::{apply_edits, BlockMode, Edit, PiiPolicy};
use crate::audit::{Audit, AuditAction, AuditEvent, Blocked};
use crate::config::{GuardConfig, InputConfig, LexiconAction, OutputConfig};
use crate::error::GuardError;
use crate::lexicon::{LexMatch, Lexicon, LexiconSource};
use crate::pii::{Finding, PiiDetector};
use crate::pseudonym::PseudonymMap;
use crate::stream::StreamModerator;

/// The result of checking one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<'a> {
    pub outcome: Outcome<'a>,
    /// Every decision taken (also when blocked), for logs and counters.
    pub audit: Vec<AuditEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// The text to use instead of the original (borrowed when nothing changed).
    Pass(Cow<'a, str>),
    /// The text must not be used; the reason names an entity type or category, not the value.
    Blocked(Blocked),
}

impl Checked<'_> {
    pub fn blocked(&self) -> Option<&Blocked> {
        match &self.outcome {
            Outcome::Blocked(b) => Some(b),
            Outcome::Pass(_) => None,
        }
    }
}

/// Cheap to clone (shared internals); build once at startup.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) detector: PiiDetector,
    pub(crate) policy: PiiPolicy,
    pub(crate) lexicon: Lexicon,
    pub(crate) input: InputConfig,
    pub(crate) output: OutputConfig,
}

/// Which checks a call runs and how it treats `block`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    pub(crate) pii: bool,
    pub(crate) lexicon: bool,
    pub(crate) mode: BlockMode,
}

impl Guard {
    /// Builds the guard, reading the lexicon files named in `config`.
    pub fn new(config: &GuardConfig) -> Result<Guard, GuardError> {
        let sources: Vec<LexiconSource> =
            config.lexicons.iter().map(LexiconSource::from_config).collect::<Result<_, _>>()?;
        Guard::with_lexicons(config, &sources)
    }

    /// Builds the guard with these term lists (`config.lexicons` is not read).
    pub fn with_lexicons(config: &GuardConfig, sources: &[LexiconSource]) -> Result<Guard, GuardError> {
        let inner = Inner {
            detector: PiiDetector::new(),
            policy: PiiPolicy::from_config(&config.pii)?,
            lexicon: Lexicon::new(sources)?,
            input: config.input,
            output: config.output,
        };
        Ok(Guard { inner: Arc::new(inner) })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub fn policy(&self) -> &PiiPolicy {
        &self.inner.policy
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.inner.lexicon
    }

    /// A fresh per-request pseudonym map when `restore_pseudonyms` is on.
    pub fn pseudonym_map(&self) -> Option<PseudonymMap> {
        self.inner.policy.restores_pseudonyms().then(PseudonymMap::new)
    }

    /// PII findings at or above the configured confidence.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        self.inner.detector.detect_with(text, self.inner.policy.min_confidence())
    }

    /// Lexicon term occurrences.
    pub fn find_terms<'g>(&'g self, text: &str) -> Vec<LexMatch<'g>> {
        self.inner.lexicon.find(text)
    }

    /// Checks a request text (a prompt or one message). Pass the request's pseudonym map to
    /// record hashed values for [`PseudonymMap::restore`]; use one map for all messages of a
    /// request so a value keeps its pseudonym across them.
    pub fn check_input<'a>(&self, text: &'a str, pseudonyms: Option<&mut PseudonymMap>) -> Checked<'a> {
        let input = self.inner.input;
        self.check(text, Pass { pii: input.pii, lexicon: input.lexicon, mode: BlockMode::Block }, pseudonyms)
    }

    /// Checks a complete (non-streamed) answer. Streams use [`Guard::stream_moderator`].
    pub fn check_output<'a>(&self, text: &'a str) -> Checked<'a> {
        let output = self.inner.output;
        self.check(text, Pass { pii: output.pii, lexicon: output.lexicon, mode: BlockMode::Block }, None)
    }

    /// Redacts a text that cannot be refused (a line of a file being cleaned): PII and lexicon
    /// `block` become redaction and masking. Runs PII and lexicons whatever the directions say.
    pub fn redact<'a>(&self, text: &'a str) -> (Cow<'a, str>, Vec<AuditEvent>) {
        let checked = self.check(text, Pass { pii: true, lexicon: true, mode: BlockMode::Redact }, None);
        match checked.outcome {
            Outcome::Pass(text) => (text, checked.audit),
            Outcome::Blocked(_) => unreachable!("BlockMode::Redact never blocks"),
        }
    }

    /// A moderator for one streamed answer.
    pub fn stream_moderator(&self) -> StreamModerator {
        StreamModerator::new(self.clone())
    }

    fn check<'a>(&self, text: &'a str, pass: Pass, pseudonyms: Option<&mut PseudonymMap>) -> Checked<'a> {
        let mut audit = Audit::default();
        let outcome = match self.process(text, pass, pseudonyms, &mut audit) {
            Ok(text) => Outcome::Pass(text),
            Err(blocked) => Outcome::Blocked(blocked),
        };
        Checked { outcome, audit: audit.into_events() }
    }

    /// Lexicon block check, then PII edits (which may block), then lexicon masks and flags.
    /// When blocked, the audit holds only the block.
    pub(crate) fn process<'a>(
        &self,
        text: &'a str,
        pass: Pass,
        pseudonyms: Option<&mut PseudonymMap>,
        audit: &mut Audit,
    ) -> Result<Cow<'a, str>, Blocked> {
        let matches = if pass.lexicon { self.inner.lexicon.find(text) } else { Vec::new() };
        let findings = if pass.pii { self.detect(text) } else { Vec::new() };
        let edits = self.edits(text, &matches, &findings, pass.mode, pseudonyms, audit)?;
        Ok(apply_edits(text, edits, self.inner.policy.mask_char()))
    }

    /// The edits for lexicon matches and PII findings in `text`, recording decisions.
    pub(crate) fn edits(
        &self,
        text: &str,
        matches: &[LexMatch<'_>],
        findings: &[Finding],
        mode: BlockMode,
        pseudonyms: Option<&mut PseudonymMap>,
        audit: &mut Audit,
    ) -> Result<Vec<Edit>, Blocked> {
        if mode == BlockMode::Block {
            if let Some(m) = matches.iter().find(|m| m.action == LexiconAction::Block) {
                audit.record(m.category, AuditAction::Block, &m.rule);
                return Err(Blocked { subject: m.category.to_owned(), rule: m.rule.clone() });
            }
        }
        let mut edits = self.inner.policy.edits(text, findings, mode, pseudonyms, audit)?;
        let mask_char = self.inner.policy.mask_char();
        for m in matches {
            match m.action {
                LexiconAction::Flag => audit.record(m.category, AuditAction::Flag, &m.rule),
                LexiconAction::Mask | LexiconAction::Block => {
                    audit.record(m.category, AuditAction::Mask, &m.rule);
                    let replacement = std::iter::repeat_n(mask_char, text[m.bytes.clone()].chars().count()).collect();
                    edits.push(Edit { range: m.bytes.clone(), replacement });
                }
            }
        }
        Ok(edits)
    }
}
