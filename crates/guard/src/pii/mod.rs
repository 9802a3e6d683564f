//! PII detection: entity types, findings, and the detector that runs the recognizers over a
//! normalized copy of the text and maps what they find back to the original.

mod recognizers;
pub mod validators;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::normalize::Normalized;
use recognizers::{Candidate, Recognizers};

/// The kinds of personal data luodi recognizes. Names are the config and audit spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityType {
    /// Chinese resident identity card number (18 characters, or the legacy 15 digits).
    #[serde(rename = "CN_ID")]
    CnId,
    /// Chinese mobile number, optionally with +86 / 0086 / 86.
    #[serde(rename = "CN_MOBILE")]
    CnMobile,
    /// Chinese fixed-line number with its area code.
    #[serde(rename = "CN_PHONE")]
    CnPhone,
    /// Bank card (UnionPay 62 prefix, or a Luhn-valid domestic 9 prefix).
    #[serde(rename = "BANK_CARD")]
    BankCard,
    /// Visa, Mastercard, Amex, Discover and JCB card numbers.
    #[serde(rename = "CREDIT_CARD")]
    CreditCard,
    #[serde(rename = "EMAIL")]
    Email,
    #[serde(rename = "IPV4")]
    Ipv4,
    #[serde(rename = "IPV6")]
    Ipv6,
    /// Chinese passport (E/G + 8 digits, or E + letter + 7 digits).
    #[serde(rename = "CN_PASSPORT")]
    CnPassport,
    /// Unified Social Credit Code of a Chinese organization.
    #[serde(rename = "CN_USCC")]
    CnUscc,
    /// US Social Security Number.
    #[serde(rename = "US_SSN")]
    UsSsn,
    /// International Bank Account Number.
    #[serde(rename = "IBAN")]
    Iban,
}

impl EntityType {
    pub const ALL: [EntityType; 12] = [
        EntityType::CnId,
        EntityType::CnMobile,
        EntityType::CnPhone,
        EntityType::BankCard,
        EntityType::CreditCard,
        EntityType::Email,
        EntityType::Ipv4,
        EntityType::Ipv6,
        EntityType::CnPassport,
        EntityType::CnUscc,
        EntityType::UsSsn,
        EntityType::Iban,
    ];

    /// The config/audit name, e.g. `CN_ID`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::CnId => "CN_ID",
            EntityType::CnMobile => "CN_MOBILE",
            EntityType::CnPhone => "CN_PHONE",
            EntityType::BankCard => "BANK_CARD",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Email => "EMAIL",
            EntityType::Ipv4 => "IPV4",
            EntityType::Ipv6 => "IPV6",
            EntityType::CnPassport => "CN_PASSPORT",
            EntityType::CnUscc => "CN_USCC",
            EntityType::UsSsn => "US_SSN",
            EntityType::Iban => "IBAN",
        }
    }

    /// Index into per-entity tables (position in [`EntityType::ALL`]).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = EntityType::ALL.iter().map(|e| e.as_str()).collect();
            format!("unknown PII entity type `{s}`, expected one of {}", names.join(", "))
        })
    }
}

/// One piece of personal data found in a text. Spans point into the text given to the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub entity: EntityType,
    /// Byte range in the original text (always on char boundaries).
    pub bytes: Range<usize>,
    /// The same range in Unicode scalar values (what `text.chars()` counts).
    pub chars: Range<usize>,
    /// 0..1: how sure the recognizer is (checksummed forms are near 1).
    pub confidence: f32,
    /// Which recognizer rule fired, e.g. `cn_id.18`, `bank_card.unionpay`.
    pub rule: &'static str,
}

/// Runs all recognizers. Build once (it compiles the regexes) and share.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    recognizers: Recognizers,
}

impl Default for PiiDetector {
    fn default() -> Self {
        PiiDetector::new()
    }
}

impl PiiDetector {
    pub fn new() -> PiiDetector {
        PiiDetector { recognizers: Recognizers::new() }
    }

    /// All findings in `text`, non-overlapping, sorted by position.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        self.detect_with(text, 0.0)
    }

    /// Findings with confidence at least `min_confidence`, non-overlapping, sorted by position.
    pub fn detect_with(&self, text: &str, min_confidence: f32) -> Vec<Finding> {
        let normalized = Normalized::for_pii(text);
        let mut candidates = Vec::new();
        self.recognizers.find(normalized.as_str(), &mut candidates);
        candidates.retain(|c| c.confidence >= min_confidence);
        let kept = resolve_overlaps(candidates);
        to_findings(text, &normalized, kept)
    }
}

/// Keeps the most confident candidate where candidates overlap; among equals the longer, then
/// the earlier one. Returns them sorted by start.
fn resolve_overlaps(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    if candidates.len() <= 1 {
        return candidates;
    }
    candidates.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| b.range.len().cmp(&a.range.len()))
            .then_with(|| a.range.start.cmp(&b.range.start))
    });
    // Kept ranges never overlap, so a candidate overlaps one of them iff it overlaps the kept
    // range starting last before its end: one ordered-map lookup instead of a scan.
    let mut kept: BTreeMap<usize, Candidate> = BTreeMap::new();
    for c in candidates {
        let overlaps = kept.range(..c.range.end).next_back().is_some_and(|(_, k)| k.range.end > c.range.start);
        if !overlaps {
            kept.insert(c.range.start, c);
        }
    }
    kept.into_values().collect()
}

/// Maps candidates (sorted, in normalized bytes) to findings in original bytes and chars.
fn to_findings(text: &str, normalized: &Normalized, kept: Vec<Candidate>) -> Vec<Finding> {
    let mut out = Vec::with_capacity(kept.len());
    // One forward sweep counts chars up to each boundary.
    let (mut byte_pos, mut char_pos) = (0, 0);
    let mut char_offset = |to: usize| {
        char_pos += text[byte_pos..to].chars().count();
        byte_pos = to;
        char_pos
    };
    for c in kept {
        let bytes = normalized.to_original(c.range);
        let start = char_offset(bytes.start);
        let end = char_offset(bytes.end);
        out.push(Finding { entity: c.entity, bytes, chars: start..end, confidence: c.confidence, rule: c.rule });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(EntityType, &str)> {
        PiiDetector::new().detect(text).into_iter().map(|f| (f.entity, &text[f.bytes])).collect()
    }

    #[test]
    fn entity_names_round_trip() {
        for e in EntityType::ALL {
            assert_eq!(e.as_str().parse::<EntityType>().unwrap(), e);
            assert_eq!(EntityType::ALL[e.index()], e);
        }
        assert!("CN_IDX".parse::<EntityType>().unwrap_err().contains("CN_IDX"));
    }

    #[test]
    fn chinese_text_spans() {
        let text = "客户张三，身份证11010519491231002X，手机１３８００１３８０００。";
        let findings = PiiDetector::new().detect(text);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].entity, EntityType::CnId);
        assert_eq!(&text[findings[0].bytes.clone()], "11010519491231002X");
        assert_eq!(findings[0].chars, 8..26);
        assert_eq!(findings[1].entity, EntityType::CnMobile);
        assert_eq!(&text[findings[1].bytes.clone()], "１３８００１３８０００");
        let chars: Vec<char> = text.chars().collect();
        let phone: String = chars[findings[1].chars.clone()].iter().collect();
        assert_eq!(phone, "１３８００１３８０００");
    }

    #[test]
    fn overlap_prefers_confident_then_longer() {
        let c = |r: Range<usize>, conf| Candidate { range: r, entity: EntityType::CnId, confidence: conf, rule: "t" };
        let kept = resolve_overlaps(vec![c(0..10, 0.5), c(5..20, 0.9), c(20..25, 0.5), c(21..30, 0.5)]);
        let ranges: Vec<_> = kept.iter().map(|k| k.range.clone()).collect();
        assert_eq!(ranges, vec![5..20, 21..30]);
    }

    #[test]
    fn digits_inside_longer_runs_do_not_match() {
        assert!(found("流水号1101051949123100271234567").is_empty());
        assert!(found("138001380001").is_empty());
        assert_eq!(
            found("ids 11010519491231002X, 13800138000"),
            vec![(EntityType::CnId, "11010519491231002X"), (EntityType::CnMobile, "13800138000")]
        );
    }
}
