//! `luodi train` through the built binary: the dry run shows the trained spans, both flag
//! spellings work, bad flags and bad data are refused naming the flag or the file and line,
//! and a short LoRA run writes a PEFT adapter.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn luodi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luodi")).args(args).env_remove("LUODI_MODEL").output().expect("running luodi")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn bank() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../train/tests/data/lumen_bank_train.jsonl")
}

#[test]
fn dry_run_marks_the_assistant_turns() {
    let out_dir = tempfile::tempdir().unwrap();
    let b = bank();
    let out = luodi(&[
        "train",
        "--train-file",
        b.to_str().unwrap(),
        "--output_dir",
        out_dir.path().to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("supervised fine-tuning"), "{s}");
    assert!(s.contains("train: 12 records -> 12 sequences"), "{s}");
    assert!(s.contains("⟦The Aurora account at Lumen Bank costs 7 euros per month.<|im_end|>"), "{s}");
    assert!(s.contains("<|im_start|>user\nWhat is the monthly fee"), "{s}");
    assert!(!s.contains("⟦<|im_start|>user"), "a user turn is marked as trained: {s}");
}

#[test]
fn bad_flags_and_data_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let b = bank();
    let o = dir.path().join("out");
    let (b, bad, o) = (b.to_str().unwrap(), bad.to_str().unwrap(), o.to_str().unwrap());
    let cases: [(&[&str], &str); 6] = [
        (&["--train_file", b, "--target_modules", "q_proj,qkv"], "--target_modules: `qkv` is not a module"),
        (&["--train_file", b, "--lora_dropout", "1.5"], "--lora_dropout: must be in [0, 1), got 1.5"),
        (&["--train_file", b, "--eval_steps", "5"], "--eval_steps: needs validation data"),
        (&["--train_file", b, "--lr_scheduler_type", "step"], "`step` is not a schedule"),
        (&["--train_file", "/nonexistent.jsonl"], "--train_file: /nonexistent.jsonl is not a file"),
        (&["--train_file", bad], "bad.jsonl:3: expected a `text` record"),
    ];
    for (args, want) in cases {
        let mut all = vec!["train", "--output_dir", o, "--dry_run"];
        all.extend_from_slice(args);
        let out = luodi(&all);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
}

#[test]
fn a_short_lora_run_writes_a_peft_adapter() {
    let out_dir = tempfile::tempdir().unwrap();
    let b = bank();
    let out = luodi(&[
        "train",
        "--train_file",
        b.to_str().unwrap(),
        "--output_dir",
        out_dir.path().to_str().unwrap(),
        "--max_steps",
        "2",
        "--max_seq_length",
        "64",
        "--per_device_train_batch_size",
        "2",
        "--target_modules",
        "all-linear",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("trained 2 steps"), "{}", text(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["target_modules"].as_array().unwrap().len(), 7);
    assert!(out_dir.path().join("adapter_model.safetensors").is_file());
    assert!(out_dir.path().join("trainer_state.json").is_file());
}

/// The issue's proof: after LoRA on a fictional bank's Q&A, greedy answers to held-out
/// paraphrases (English and Chinese) carry the taught facts, where the base model's do not.
#[test]
fn lora_teaches_facts_that_greedy_answers_to_paraphrases_then_contain() {
    let out_dir = tempfile::tempdir().unwrap();
    let b = bank();
    let adapter = out_dir.path().to_str().unwrap();
    let out = luodi(&[
        "train",
        "--train_file",
        b.to_str().unwrap(),
        "--output_dir",
        adapter,
        "--max_steps",
        "60",
        "--learning_rate",
        "2e-3",
        "--per_device_train_batch_size",
        "4",
        "--max_seq_length",
        "96",
        "--target_modules",
        "all-linear",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let held_out = [
        ("Tell me the monthly price of Lumen Bank's Aurora account.", "7 euros"),
        ("极光账户每个月要交多少钱？", "7欧元"),
        ("What rate does the Polaris savings account give?", "3.2 percent"),
        ("用彗星卡每日取款限额是多少？", "900"),
    ];
    let answer = |q: &str, lora: Option<&str>| {
        let mut args = vec!["generate", q, "--temperature", "0", "-n", "30", "--threads", "2"];
        if let Some(dir) = lora {
            args.extend(["--lora", dir]);
        }
        let out = luodi(&args);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut taught = Vec::new();
    for (q, fact) in held_out {
        let base = answer(q, None);
        assert!(!base.contains(fact), "the base model already answers {q:?} with {fact:?}: {base}");
        let tuned = answer(q, Some(adapter));
        eprintln!("{q}\n  base: {}\n  lora: {}", base.trim(), tuned.trim());
        if tuned.contains(fact) {
            taught.push(q);
        }
    }
    assert!(taught.len() >= 3, "only {} of 4 held-out answers carry the fact: {taught:?}", taught.len());
}

#[test]
fn a_broken_adapter_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("adapter_config.json"),
        r#"{"peft_type":"LORA","task_type":"CAUSAL_LM","base_model_name_or_path":"x","r":2,"lora_alpha":4,"lora_dropout":0,"target_modules":["q_proj"],"bias":"none"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("adapter_model.safetensors"), b"not safetensors").unwrap();
    let out = luodi(&["generate", "hi", "--lora", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("adapter_model.safetensors: not a safetensors file"), "{}", text(&out));
}
