//! The real engine behind the HTTP router under more load than it admits: a small waiting
//! queue overflows into 429s with `Retry-After`, and every admitted request gets exactly one
//! answer, its own (equal to the greedy answer it gets alone).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use luodi_engine::batch::BatchConfig;
use luodi_engine::{ChatMessage, Engine, GenerateRequest, Prompt, SamplingParams};
use luodi_engine_backend::EngineBackend;
use luodi_server::app::{router, ApiKeys};
use luodi_server::config::ServerConfig;
use luodi_server::state::AppState;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

fn model_path() -> PathBuf {
    let home = std::env::var_os("LUODI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".luodi"));
    let path = home.join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `luodi models fetch smollm2-135m`", path.display());
    path
}

const MAX_TOKENS: usize = 12;

fn question(i: usize) -> String {
    format!("Customer {i} asks: what is the status of order number {}?", 1000 + i * 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after_and_loses_nothing() {
    // Solo greedy answers first, from a separate engine, to compare against.
    let solo_engine = Engine::load(&model_path()).unwrap();
    let solo: Vec<String> = (0..24)
        .map(|i| {
            let req = GenerateRequest {
                prompt: Prompt::Chat(vec![ChatMessage::new("user", question(i))]),
                max_tokens: MAX_TOKENS,
                sampling: SamplingParams::greedy(),
                stop: vec![],
            };
            solo_engine.generate(&req, |_| std::ops::ControlFlow::Continue(())).unwrap().text
        })
        .collect();
    drop(solo_engine);

    let batch = BatchConfig { max_num_seqs: 2, max_batch_tokens: 64, ..BatchConfig::default() };
    let backend = EngineBackend::start(Engine::load(&model_path()).unwrap(), "smollm2-135m".into(), 3, batch);
    let state = AppState {
        backend: Arc::new(backend),
        embedder: None,
        config: Arc::new(ServerConfig::default()),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
        guard: Default::default(),
        cache: None,
        model_version: "test@0".into(),
        recorder: None,
    };
    let app = router(state, ApiKeys::new(vec![]));

    // 24 requests at once against 2 running slots and 3 waiting places.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": question(i)}],
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
                "stream": i % 2 == 0,
            });
            let req = Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (i, status, retry_after, String::from_utf8(bytes.to_vec()).unwrap())
        }));
    }
    let mut ok = 0;
    let mut rejected = 0;
    for task in tasks {
        let (i, status, retry_after, body) = task.await.unwrap();
        match status {
            StatusCode::OK => {
                ok += 1;
                let text = if i % 2 == 0 { streamed_text(&body) } else { message_text(&body) };
                assert_eq!(text, solo[i], "request {i} got someone else's or a changed answer");
            }
            StatusCode::TOO_MANY_REQUESTS => {
                rejected += 1;
                assert!(retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)), "429 without Retry-After");
                let err: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(err["error"]["code"], "queue_full");
            }
            other => panic!("request {i}: unexpected status {other}: {body}"),
        }
    }
    assert_eq!(ok + rejected, 24, "every request got exactly one response");
    assert!(rejected > 0, "the queue of 3 overflowed");
    assert!(ok >= 3, "at least the waiting places were used: {ok} ok");
}

fn message_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

/// Concatenated content deltas of an SSE body that ends with exactly one `[DONE]`.
fn streamed_text(body: &str) -> String {
    let mut text = String::new();
    let mut done = 0;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            done += 1;
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    assert_eq!(done, 1, "one [DONE] per stream");
    text
}
