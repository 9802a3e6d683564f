//! `luodi feedback export` through the built binary, on a SQLite store written with the
//! store crate.

use luodi_store::{Interaction, NewFeedback, Store};
use serde_json::{json, Value};
use std::process::Command;

fn interaction(id: &str, created_ms: i64, answer: &str) -> Interaction {
    Interaction {
        id: id.into(),
        created_ms,
        api_key_id: None,
        route: "chat".into(),
        model_version: "m@1".into(),
        style: None,
        messages: json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": format!("问题 {id}")}]),
        answer: answer.into(),
        finish_reason: "stop".into(),
        prompt_tokens: 5,
        completion_tokens: 3,
        ttft_ms: None,
        latency_ms: 10.0,
        cache: "miss".into(),
        guard: vec![],
    }
}

fn fb(id: &str, reviewer: &str, rating: i64, correction: Option<&str>) -> NewFeedback {
    NewFeedback {
        request_id: id.into(),
        reviewer: reviewer.into(),
        rating: Some(rating),
        correction: correction.map(str::to_string),
        comment: None,
        labels: vec![],
    }
}

fn export(url: &str, out: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let status = Command::new(env!("CARGO_BIN_EXE_luodi"))
        .args(["feedback", "export", "--store-url", url, "--out", out.to_str().unwrap()])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn sft_dpo_and_raw_records() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("luodi.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&url, "luodi_").await.unwrap();
        store
            .insert_interactions(&[
                interaction("a", 1_000, "我们九点开门。"),
                interaction("b", 2_000, "Paris."),
                interaction("c", 3_000, "wrong"),
                interaction("d", 4_000, "never reviewed"),
            ])
            .await
            .unwrap();
        store.add_feedback(&fb("a", "alice", -1, Some("我们八点开门。"))).await.unwrap();
        store.add_feedback(&fb("b", "alice", 5, None)).await.unwrap();
        store.add_feedback(&fb("c", "alice", 1, Some("first try"))).await.unwrap();
        store.add_feedback(&fb("c", "alice", 1, Some("right"))).await.unwrap();
        store.close().await;
    });
    let out = dir.path().join("out.jsonl");

    let sft = export(&url, &out, &["--format", "sft"]);
    assert_eq!(sft.len(), 2, "corrections only without --min-rating: {sft:?}");
    let c = sft.iter().find(|r| r["request_id"] == "c").unwrap();
    assert_eq!(c["messages"][2], json!({"role": "assistant", "content": "right"}), "the newest correction");
    assert_eq!(c["messages"][0]["role"], "system");
    let with_rated = export(&url, &out, &["--format", "sft", "--min-rating", "1"]);
    let ids: Vec<&str> = with_rated.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["c", "b"], "a is rated -1; b's own answer is admitted by its 5: {with_rated:?}");
    assert_eq!(with_rated[1]["source"], "answer");

    let dpo = export(&url, &out, &["--format", "dpo"]);
    assert_eq!(dpo.len(), 2);
    let a = dpo.iter().find(|r| r["request_id"] == "a").unwrap();
    assert_eq!((a["chosen"].as_str(), a["rejected"].as_str()), (Some("我们八点开门。"), Some("我们九点开门。")));

    let raw = export(&url, &out, &["--format", "jsonl", "--since", "2500"]);
    assert_eq!(raw.len(), 1, "d has no feedback; only c is after 2500 ms");
    assert_eq!(raw[0]["feedback"].as_array().unwrap().len(), 2, "history included");

    let bad = Command::new(env!("CARGO_BIN_EXE_luodi"))
        .args(["feedback", "export", "--format", "sft", "--out", "-", "--store-url"])
        .arg(format!("sqlite://{}", dir.path().join("missing.db").display()))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no store at"), "{}", String::from_utf8_lossy(&bad.stderr));
}
