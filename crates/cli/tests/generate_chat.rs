//! `luodi generate` and `luodi chat` through the built binary, on the bundled default model
//! (fetched by scripts/test before the tests run; found through `$LUODI_HOME`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn luodi(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_luodi"))
        .args(args)
        .env_remove("LUODI_CONFIG")
        .env_remove("LUODI_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running luodi");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const GREEDY: [&str; 4] = ["--temperature", "0", "--threads", "2"];

#[test]
fn generate_streams_the_same_text_it_reports_as_json() {
    let mut args = vec!["generate", "中国的首都是哪里？", "-n", "12"];
    args.extend(GREEDY);
    let streamed = luodi(&args, None);
    assert!(streamed.status.success(), "{}", text(&streamed));
    args.extend(["--json", "--logprobs", "2"]);
    let out = luodi(&args, None);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answer = v["text"].as_str().unwrap();
    assert!(!answer.is_empty(), "{v}");
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), format!("{answer}\n"), "greedy: streamed = reported");
    let n = v["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&n), "{v}");
    assert_eq!(v["tokens"].as_array().unwrap().len() as u64, n);
    let logprobs = v["logprobs"].as_array().unwrap();
    assert_eq!(logprobs.len() as u64, n);
    for t in logprobs {
        let top = t["top"].as_array().unwrap();
        assert_eq!(top.len(), 2, "{t}");
        // Greedy: the chosen token is the most likely one.
        assert_eq!(t["id"], top[0]["id"], "{t}");
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
    }
    assert!(v["prompt_tokens"].as_u64().unwrap() > 5, "the chat template wraps the prompt: {v}");
    assert!(v["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(matches!(v["finish_reason"].as_str(), Some("stop" | "length")), "{v}");
}

#[test]
fn raw_prompts_skip_the_template_and_stop_strings_end_the_text() {
    let mut args = vec!["generate", "1, 2, 3, 4,", "--raw", "-n", "16", "--stop", "7", "--json"];
    args.extend(GREEDY);
    let out = luodi(&args, None);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answer = v["text"].as_str().unwrap();
    assert!(answer.contains('5') && !answer.contains('7'), "counting, cut before the stop string: {answer:?}");
    assert_eq!(v["finish_reason"], "stop", "{v}");
    assert!(v["prompt_tokens"].as_u64().unwrap() < 12, "no template around a raw prompt: {v}");
}

#[test]
fn generate_refuses_a_bad_sampling_value_naming_it() {
    let out = luodi(&["generate", "hi", "--top-p", "0", "-n", "2"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("`top_p`"), "{}", text(&out));
    let out = luodi(&["generate", "hi", "--model", "no-such-model"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("no-such-model"), "{}", text(&out));
}

#[test]
fn piped_chat_answers_each_line_and_keeps_the_conversation() {
    let mut args = vec!["chat", "-n", "8", "--system", "你是一个简洁的助手。"];
    args.extend(GREEDY);
    let out = luodi(&args, Some("你好\n\n/history\n/reset\n/history\nWhat is 2+2?\n/exit\nnever read\n"));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "one answer per user line, none after /exit: {stdout:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The first /history shows system, user and assistant; after /reset only the system message.
    let first = stderr.split("(new conversation)").next().unwrap();
    assert!(first.contains("[system] 你是一个简洁的助手。") && first.contains("[user] 你好"), "{stderr}");
    assert!(first.contains("[assistant] "), "{stderr}");
    let after = stderr.split("(new conversation)").nth(1).unwrap_or_default();
    assert!(after.contains("[system]") && !after.contains("[user] 你好"), "{stderr}");
}
