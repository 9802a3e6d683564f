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
