//! File scanning and redaction for `luodi guard scan FILE` / `luodi guard redact`: line by line
//! in constant memory (one line at a time), plain text or JSONL.
//!
//! In JSONL only string values are examined (keys, numbers and the layout are kept byte for
//! byte), after unescaping, so `"\u0031\u0033\u0038..."` is seen as the digits it encodes.
//! Lines that are not valid JSON are treated as plain text and counted.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use crate::audit::AuditEvent;
use crate::guard::Guard;
use crate::pii::EntityType;

/// How to read lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
}

impl Format {
    /// JSONL for `.jsonl` and `.ndjson`, text otherwise.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => Format::Jsonl,
            _ => Format::Text,
        }
    }
}

/// What a scan or redaction found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSummary {
    pub lines: u64,
    pub bytes: u64,
    /// Lines with at least one finding or term.
    pub lines_with_findings: u64,
    /// PII findings per entity type.
    pub entities: BTreeMap<EntityType, u64>,
    /// Lexicon term occurrences per category.
    pub categories: BTreeMap<String, u64>,
    /// JSONL lines that were not JSON (scanned as text).
    pub invalid_json_lines: u64,
    /// Lines that were not UTF-8 (scanned, and written, with U+FFFD for the bad bytes).
    pub invalid_utf8_lines: u64,
}

/// Reported to the progress callback every [`PROGRESS_EVERY`] lines and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub lines: u64,
    pub bytes: u64,
}

pub const PROGRESS_EVERY: u64 = 1000;

/// Counts PII findings and lexicon terms in `reader`, without changing anything.
pub fn scan_reader<R: BufRead>(
    reader: R,
    guard: &Guard,
    format: Format,
    progress: impl FnMut(&Progress),
) -> io::Result<ScanSummary> {
    let mut summary = ScanSummary::default();
    for_each_line(reader, &mut summary, progress, |line, summary| {
        let before = total(summary);
        for_each_string(line, format, summary, |text, summary| {
            for finding in guard.detect(text) {
                *summary.entities.entry(finding.entity).or_default() += 1;
            }
            for m in guard.find_terms(text) {
                *summary.categories.entry(m.category.to_owned()).or_default() += 1;
            }
            None
        });
        if total(summary) > before {
            summary.lines_with_findings += 1;
        }
        Ok(())
    })?;
    Ok(summary)
}

/// Copies `reader` to `writer` with PII and lexicon terms redacted ([`Guard::redact`]: `block`
/// becomes redaction, since a file line cannot be refused). Line endings are kept.
pub fn redact_stream<R: BufRead, W: Write>(
    reader: R,
    mut writer: W,
    guard: &Guard,
    format: Format,
    progress: impl FnMut(&Progress),
) -> io::Result<ScanSummary> {
    let mut summary = ScanSummary::default();
    let mut out = String::new();
    for_each_line(reader, &mut summary, progress, |line, summary| {
        let before = total(summary);
        out.clear();
        let changed = for_each_string(line, format, summary, |text, summary| {
            let (redacted, audit) = guard.redact(text);
            count_audit(&audit, summary);
            match redacted {
                std::borrow::Cow::Owned(s) => Some(s),
                std::borrow::Cow::Borrowed(_) => None,
            }
        });
        if total(summary) > before {
            summary.lines_with_findings += 1;
        }
        writer.write_all(changed.as_deref().unwrap_or(line).as_bytes())
    })
    .and_then(|()| writer.flush())
    .map(|()| summary)
}

fn total(summary: &ScanSummary) -> u64 {
    summary.entities.values().sum::<u64>() + summary.categories.values().sum::<u64>()
}

fn count_audit(audit: &[AuditEvent], summary: &mut ScanSummary) {
    for event in audit {
        let count = u64::from(event.count);
        match event.subject.parse::<EntityType>() {
            Ok(entity) => *summary.entities.entry(entity).or_default() += count,
            Err(_) => *summary.categories.entry(event.subject.clone()).or_default() += count,
        }
    }
}

/// Reads lines (keeping the terminator out of `line`, writing it back through `on_line` is the
/// caller's business), counting lines and bytes.
fn for_each_line<R: BufRead>(
    mut reader: R,
    summary: &mut ScanSummary,
    mut progress: impl FnMut(&Progress),
    mut on_line: impl FnMut(&str, &mut ScanSummary) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        summary.lines += 1;
        summary.bytes += n as u64;
        let line = match std::str::from_utf8(&buf) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => {
                summary.invalid_utf8_lines += 1;
                String::from_utf8_lossy(&buf)
            }
        };
        on_line(&line, summary)?;
        if summary.lines.is_multiple_of(PROGRESS_EVERY) {
            progress(&Progress { lines: summary.lines, bytes: summary.bytes });
        }
    }
    progress(&Progress { lines: summary.lines, bytes: summary.bytes });
    Ok(())
}

/// Calls `f` on the line's content (text) or each JSON string value (JSONL), and returns the
/// line rebuilt with `f`'s replacements, or `None` if nothing changed. The line terminator is
/// never passed to `f` and always kept.
fn for_each_string(
    line: &str,
    format: Format,
    summary: &mut ScanSummary,
    mut f: impl FnMut(&str, &mut ScanSummary) -> Option<String>,
) -> Option<String> {
    let content_end = line.trim_end_matches(['\n', '\r']).len();
    let content = &line[..content_end];
    let strings = match format {
        Format::Jsonl if content.trim().is_empty() => return None,
        Format::Jsonl => match json_string_values(content) {
            Some(strings) => strings,
            None => {
                summary.invalid_json_lines += 1;
                vec![(0..content_end, false)]
            }
        },
        Format::Text => vec![(0..content_end, false)],
    };
    let mut out: Option<String> = None;
    let mut pos = 0;
    for (range, is_json) in strings {
        let replacement = if is_json {
            let Ok(value) = serde_json::from_str::<String>(&line[range.clone()]) else { continue };
            f(&value, summary).and_then(|s| serde_json::to_string(&s).ok())
        } else {
            f(&line[range.clone()], summary)
        };
        if let Some(replacement) = replacement {
            let out = out.get_or_insert_with(|| String::with_capacity(line.len()));
            out.push_str(&line[pos..range.start]);
            out.push_str(&replacement);
            pos = range.end;
        }
    }
    out.map(|mut out| {
        out.push_str(&line[pos..]);
        out
    })
}

/// Byte ranges (quotes included) of the string values (not keys) in a JSON document, or `None`
/// if `doc` is not JSON.
fn json_string_values(doc: &str) -> Option<Vec<(Range<usize>, bool)>> {
    serde_json::from_str::<serde::de::IgnoredAny>(doc).ok()?;
    let b = doc.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        let end = i + 1;
        i = end;
        let next = b[end.min(b.len())..].iter().find(|c| !c.is_ascii_whitespace());
        if next != Some(&b':') {
            out.push((start..end, true));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_skip_keys() {
        let doc = r#"{"name": "张三", "n": 1, "list": ["a\"b", {"k":"v"}]}"#;
        let values: Vec<&str> = json_string_values(doc).unwrap().into_iter().map(|(r, _)| &doc[r]).collect();
        assert_eq!(values, vec![r#""张三""#, r#""a\"b""#, r#""v""#]);
        assert!(json_string_values("{not json").is_none());
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(Format::from_path(Path::new("a/b.JSONL")), Format::Jsonl);
        assert_eq!(Format::from_path(Path::new("a/b.ndjson")), Format::Jsonl);
        assert_eq!(Format::from_path(Path::new("a/b.txt")), Format::Text);
        assert_eq!(Format::from_path(Path::new("noext")), Format::Text);
    }
}
