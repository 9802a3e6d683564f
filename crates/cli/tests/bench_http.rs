//! `luodi bench http` end to end: the built binary against a fake OpenAI-compatible server in
//! this process, checked by counts only (requests, errors by type, tokens), never by timing.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_stream::wrappers::ReceiverStream;

/// The streamed answer: four text chunks, Chinese so multi-byte characters cross write boundaries.
const PIECES: [&str; 4] = ["您好", "，我能", "帮您", "什么？"];
/// What the usage chunk claims, deliberately unlike the chunk count to show usage is preferred.
const USAGE_TOKENS: u64 = 7;

#[derive(Default)]
struct Fake {
    /// Every second chat request (1st, 3rd, ... counting from 0) gets 429.
    reject_every_other: bool,
    usage: bool,
    calls: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}, {"id": "other"}]}))
}

async fn chat(State(fake): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    let n = fake.calls.fetch_add(1, Ordering::SeqCst);
    fake.bodies.lock().unwrap().push(body);
    if fake.reject_every_other && n % 2 == 1 {
        let error = json!({"error": {"message": "queue full", "type": "rate_limit_error"}});
        return (StatusCode::TOO_MANY_REQUESTS, Json(error)).into_response();
    }
    let mut events = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})];
    events.extend(PIECES.iter().map(|p| json!({"choices": [{"index": 0, "delta": {"content": p}}]})));
    if fake.usage {
        let usage = json!({"prompt_tokens": 11, "completion_tokens": USAGE_TOKENS, "total_tokens": 11 + USAGE_TOKENS});
        events.push(json!({"choices": [], "usage": usage}));
    }
    let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        // 7-byte writes with pauses: events and 3-byte characters end up split across reads.
        for piece in text.into_bytes().chunks(7) {
            if tx.send(Ok(piece.to_vec())).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap()
}

/// Starts the fake server on its own runtime thread; returns its base URL.
fn start(fake: Fake) -> (String, Arc<Fake>) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .with_state(fake.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), fake)
}

fn luodi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luodi"))
        .args(["bench", "http"])
        .args(args)
        .env_remove("LUODI_API_KEY")
        .output()
        .unwrap()
}

fn json_report(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "luodi failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"))
}

fn failure(args: &[&str]) -> String {
    let out = luodi(args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn closed_loop_counts_requests_and_tokens() {
    let (url, fake) = start(Fake { usage: true, ..Fake::default() });
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("report.json");
    let out = luodi(&[
        "--url",
        &format!("{url}/v1"),
        "--concurrency",
        "1,3",
        "--requests",
        "6",
        "--system",
        "Be brief.",
        "--extra-body",
        r#"{"cache_prompt": false}"#,
        "--json",
        "--output",
        output.to_str().unwrap(),
    ]);
    let report = json_report(&out);
    assert_eq!(report["model"], "fake-model", "the first listed model is used without --model");
    assert_eq!(report["url"], url);
    assert_eq!(report["max_tokens"], 64);
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (level, concurrency) in levels.iter().zip([1, 3]) {
        assert_eq!(level["concurrency"], concurrency);
        assert_eq!(
            (level["requests"].as_u64(), level["ok"].as_u64(), level["errors"].as_u64()),
            (Some(6), Some(6), Some(0))
        );
        assert_eq!(level["output_tokens"], 6 * USAGE_TOKENS);
        assert_eq!(level["output_tokens_estimated"], false);
        assert_eq!(level["mean_output_tokens"], USAGE_TOKENS as f64);
        assert_eq!(level["mean_prompt_tokens"], 11.0);
        assert!(level["ttft_ms"]["p50"].is_number() && level["itl_ms"]["p99"].is_number(), "{level}");
        assert!(level["e2e_ms"]["p90"].is_number());
    }
    // One warm-up request plus 6 per level; every body carries the settings and --extra-body.
    assert_eq!(fake.calls.load(Ordering::SeqCst), 13);
    for body in fake.bodies.lock().unwrap().iter() {
        assert_eq!(
            (&body["model"], &body["stream"], &body["max_tokens"]),
            (&json!("fake-model"), &json!(true), &json!(64))
        );
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["cache_prompt"], false);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(body["messages"][1]["role"], "user");
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(written, report);
}

#[test]
fn http_errors_are_counted_by_status() {
    let (url, _fake) = start(Fake { usage: true, reject_every_other: true, ..Fake::default() });
    let args = ["--url", url.as_str(), "--model", "m", "--concurrency", "2", "--requests", "8", "--warmup", "0"];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let report = json_report(&luodi(&with_json));
    let level = &report["levels"][0];
    assert_eq!(
        (level["requests"].as_u64(), level["ok"].as_u64(), level["errors"].as_u64()),
        (Some(8), Some(4), Some(4))
    );
    assert_eq!(level["errors_by_type"], json!({"429": 4}));
    assert!(level["error_examples"]["429"].as_str().unwrap().contains("queue full"));
    assert_eq!(level["output_tokens"], 4 * USAGE_TOKENS);

    // The same run as a table.
    let out = luodi(&args);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    println!("{table}");
    assert!(table.contains("| level | ok | errors |"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("| c=2 | 4 | 4 |") && l.ends_with("| 429: 4 |")), "{table}");
    assert!(table.contains("- 429: HTTP 429: queue full"), "{table}");
}

#[test]
fn open_loop_without_usage_estimates_tokens() {
    let (url, fake) = start(Fake::default());
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "first question\n\n第二个问题\n").unwrap();
    let out = luodi(&[
        "--url",
        &url,
        "--request-rate",
        "200",
        "--max-concurrency",
        "2",
        "--requests",
        "5",
        "--warmup",
        "0",
        "--prompts",
        prompts.to_str().unwrap(),
        "--json",
    ]);
    let report = json_report(&out);
    let level = &report["levels"][0];
    assert_eq!((level["request_rate"].as_f64(), level["max_concurrency"].as_u64()), (Some(200.0), Some(2)));
    assert_eq!((level["ok"].as_u64(), level["errors"].as_u64()), (Some(5), Some(0)));
    assert_eq!(level["output_tokens"], 5 * PIECES.len() as u64);
    assert_eq!(level["output_tokens_estimated"], true);
    // Prompts are used in order, wrapping around.
    let users: Vec<Value> = fake.bodies.lock().unwrap().iter().map(|b| b["messages"][0]["content"].clone()).collect();
    let mut users: Vec<&str> = users.iter().map(|v| v.as_str().unwrap()).collect();
    users.sort();
    assert_eq!(users, ["first question", "first question", "first question", "第二个问题", "第二个问题"]);
}

#[test]
fn unreachable_server_is_counted_not_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let report = json_report(&luodi(&["--url", &url, "--model", "m", "-c", "1", "-n", "2", "--warmup", "0", "--json"]));
    assert_eq!(report["levels"][0]["errors_by_type"], json!({"connect": 2}));
}

#[test]
fn bad_flags_name_the_flag() {
    assert!(failure(&["--concurrency", "0"]).contains("--concurrency"));
    assert!(failure(&[]).contains("--request-rate"));
    assert!(failure(&["-c", "1", "--request-rate", "2"]).contains("cannot be used with"));
    assert!(failure(&["-c", "1", "--max-concurrency", "2"]).contains("--max-concurrency"));
    assert!(failure(&["-c", "1", "--extra-body", "[1]"]).contains("--extra-body"));
    assert!(failure(&["-c", "1", "--url", "https://example.com"]).contains("no TLS"));
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"ok\"}\n{\"prompt\": 1}\n").unwrap();
    let err = failure(&["-c", "1", "--prompts", prompts.to_str().unwrap()]);
    assert!(err.contains("--prompts") && err.contains("line 2"), "{err}");
    std::fs::write(&prompts, "").unwrap();
    assert!(failure(&["-c", "1", "--prompts", prompts.to_str().unwrap()]).contains("empty"));
}
