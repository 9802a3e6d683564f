//! `luodi guard scan` and `luodi guard redact` through the built binary.

use std::path::Path;
use std::process::{Command, Output};

const ID: &str = "41010519590722056X";
const MOBILE: &str = "13800138000";
const EMAIL: &str = "zhang.san@example.com";

fn luodi(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luodi"))
        .args(args)
        .current_dir(dir)
        .env_remove("LUODI_CONFIG")
        .output()
        .expect("running luodi")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn sample(dir: &Path) {
    std::fs::write(
        dir.join("data.txt"),
        format!("张三 身份证 {ID}\n手机 {MOBILE}，邮箱 {EMAIL}\n没有个人信息的一行\n"),
    )
    .unwrap();
    std::fs::write(dir.join("words.txt"), "# test list\n机密\n").unwrap();
    std::fs::write(
        dir.join("luodi.toml"),
        "[[guard.lexicons]]\ncategory = \"secret\"\naction = \"block\"\npath = \"words.txt\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("notes.jsonl"),
        format!("{{\"text\": \"call {MOBILE}\", \"n\": 1}}\n{{\"text\": \"机密\"}}\n"),
    )
    .unwrap();
}

#[test]
fn scan_counts_entities_and_categories() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let out = luodi(dir.path(), &["guard", "scan", "data.txt", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entities"]["CN_ID"], 1, "{v}");
    assert_eq!(v["entities"]["CN_MOBILE"], 1, "{v}");
    assert_eq!(v["entities"]["EMAIL"], 1, "{v}");
    assert_eq!(v["lines"], 3, "{v}");
    assert_eq!(v["lines_with_findings"], 2, "{v}");

    // JSONL by extension, the lexicon from ./luodi.toml, and the table form.
    let out = luodi(dir.path(), &["guard", "scan", "notes.jsonl"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("CN_MOBILE") && l.trim_end().ends_with(" 1")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("secret") && l.contains("lexicon")), "{table}");
}

#[test]
fn redact_writes_a_masked_copy() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let out = luodi(dir.path(), &["guard", "redact", "data.txt", "--out", "clean.txt"]);
    assert!(out.status.success(), "{}", text(&out));
    let clean = std::fs::read_to_string(dir.path().join("clean.txt")).unwrap();
    for raw in [ID, MOBILE, EMAIL] {
        assert!(!clean.contains(raw), "{raw} still in {clean}");
    }
    assert_eq!(clean.lines().count(), 3);
    assert!(clean.contains("没有个人信息的一行"), "{clean}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("CN_ID") && table.contains("EMAIL"), "{table}");
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let out = luodi(dir.path(), &["guard", "scan", "missing.txt"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("missing.txt"), "{}", text(&out));

    std::fs::write(dir.path().join("bad.toml"), "[guard.pii.entities]\nCN_IDX = \"hash\"\n").unwrap();
    let out = luodi(dir.path(), &["guard", "scan", "data.txt", "--config", "bad.toml"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("CN_IDX"), "{}", text(&out));

    std::fs::write(
        dir.path().join("bad2.toml"),
        "[[guard.lexicons]]\ncategory = \"x\"\naction = \"block\"\npath = \"nope.txt\"\n",
    )
    .unwrap();
    let out = luodi(dir.path(), &["guard", "redact", "data.txt", "--out", "o.txt", "--config", "bad2.toml"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nope.txt"), "{}", text(&out));
}

#[test]
fn bench_guard_times_requests_and_counts_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let out = luodi(dir.path(), &["bench", "guard", "--requests", "40", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"], 40);
    assert_eq!(v["blocked_requests"], 0, "default rules mask, never block");
    assert!(v["p50_us"].as_f64().unwrap() > 0.0 && v["p99_us"].as_f64() >= v["p50_us"].as_f64(), "{v}");
    // Every other request carries an ID number; with CN_ID = "block" those are refused.
    std::fs::write(dir.path().join("luodi.toml"), "[guard.pii.entities]\nCN_ID = \"block\"\n").unwrap();
    let out = luodi(dir.path(), &["bench", "guard", "--requests", "40", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocked_requests"], 20, "{v}");
}
