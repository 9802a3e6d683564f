//! File scanning and redaction, text and JSONL.

use std::io::Cursor;

use luodi_guard::{redact_stream, scan_reader, EntityType, Format, Guard, GuardConfig, LexiconAction, LexiconConfig};

fn guard() -> Guard {
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some("scan-test-key-0123456789".into());
    config.lexicons = vec![LexiconConfig {
        category: "rude".into(),
        action: LexiconAction::Block,
        path: None,
        terms: vec!["坏人".into()],
    }];
    Guard::new(&config).unwrap()
}

#[test]
fn scan_counts_per_entity_type() {
    let input = "手机13800138000\n无\r\n邮箱a@b.cn 和 c@d.cn\n坏人 110.1.1.1\n";
    let summary = scan_reader(Cursor::new(input), &guard(), Format::Text, |_| {}).unwrap();
    assert_eq!(summary.lines, 4);
    assert_eq!(summary.bytes, input.len() as u64);
    assert_eq!(summary.lines_with_findings, 3);
    assert_eq!(summary.entities.get(&EntityType::CnMobile), Some(&1));
    assert_eq!(summary.entities.get(&EntityType::Email), Some(&2));
    assert_eq!(summary.entities.get(&EntityType::Ipv4), Some(&1));
    assert_eq!(summary.categories.get("rude"), Some(&1));
    let json = serde_json::to_string(&summary).unwrap();
    assert!(json.contains(r#""EMAIL":2"#), "{json}");
}

#[test]
fn redact_text_keeps_line_endings() {
    let input = "手机13800138000\r\n无\n最后一行 a@b.cn";
    let mut out = Vec::new();
    let mut reports = Vec::new();
    let summary =
        redact_stream(Cursor::new(input), &mut out, &guard(), Format::Text, |p| reports.push((p.lines, p.bytes)))
            .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "手机138****8000\r\n无\n最后一行 ***@b.cn");
    assert_eq!(summary.lines, 3);
    assert_eq!(reports.last(), Some(&(3, input.len() as u64)), "a final progress report");
}

#[test]
fn jsonl_redacts_string_values_only() {
    let input = concat!(
        r#"{"id": 13800138000, "phone": "13800138000", "note": "\u53ef\u4ee5 13900139000", "13700137000": 1}"#,
        "\n",
        "not json 13800138000\n",
        "\n",
        r#"{"nested": {"list": ["坏人", "ok"]}}"#,
        "\n",
    );
    let mut out = Vec::new();
    let summary = redact_stream(Cursor::new(input), &mut out, &guard(), Format::Jsonl, |_| {}).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], r#"{"id": 13800138000, "phone": "138****8000", "note": "可以 139****9000", "13700137000": 1}"#,
        "numbers and keys untouched, escapes decoded before scanning"
    );
    assert_eq!(lines[1], "not json 138****8000", "invalid JSON is redacted as text");
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], r#"{"nested": {"list": ["**", "ok"]}}"#, "block becomes mask in files");
    assert_eq!(summary.invalid_json_lines, 1);
    assert_eq!(summary.entities.get(&EntityType::CnMobile), Some(&3));
    assert_eq!(summary.categories.get("rude"), Some(&1));
    // The output is still valid JSONL.
    for line in [lines[0], lines[3]] {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn invalid_utf8_is_counted_not_fatal() {
    let input: &[u8] = b"ok 13800138000\n\xff\xfe bad\n";
    let summary = scan_reader(Cursor::new(input), &guard(), Format::Text, |_| {}).unwrap();
    assert_eq!((summary.lines, summary.invalid_utf8_lines), (2, 1));
}
