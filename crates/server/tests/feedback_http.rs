//! Recording and feedback through `Router::oneshot`: a fake backend, the real interaction
//! store (a SQLite file; the store's own suite covers PostgreSQL), the real recorder.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use luodi_server::app::{router, ApiKeys};
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use luodi_server::recorder::{Recorder, RecorderConfig};
use luodi_server::state::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

async fn app(dir: &std::path::Path) -> (axum::Router, Recorder) {
    app_with(dir, RecorderConfig::default()).await
}

async fn app_with(dir: &std::path::Path, settings: RecorderConfig) -> (axum::Router, Recorder) {
    let url = format!("sqlite://{}", dir.join("luodi.db").display());
    let store = luodi_store::Store::open(&url, "luodi_").await.unwrap();
    let recorder = Recorder::start(store, settings);
    let config = ServerConfig::default();
    let state = AppState {
        backend: common::Fake::with_usage(common::Script::Tokens(vec!["您好，", "我们九点", "开门。"]), 9),
        embedder: None,
        guard: Guarding::from_config(&config).unwrap(),
        config: Arc::new(config),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
        cache: None,
        model_version: "tiny@abc".into(),
        recorder: Some(recorder.clone()),
    };
    (router(state, ApiKeys::default()), recorder)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    let text = String::from_utf8_lossy(&bytes).to_string();
    (status, if v.is_null() { Value::String(text) } else { v }, id)
}

#[tokio::test]
async fn answers_are_recorded_with_pseudonyms_and_feedback_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _recorder) = app(dir.path()).await;
    let ask =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "我的手机号是13800138000，几点开门？"}]});
    let (status, _, id) = call(&app, "POST", "/v1/chat/completions", Some(ask.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.unwrap();
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let (_, _, stream_id) = call(&app, "POST", "/v1/chat/completions", Some(streamed)).await;
    let (status, _, generate_id) = call(&app, "POST", "/generate", Some(json!({"prompt": "几点开门？"}))).await;
    assert_eq!(status, StatusCode::OK);

    // Feedback right after the answer: the recorder is flushed on demand, no 404.
    let (status, fb, _) = call(
        &app,
        "POST",
        "/v1/feedback",
        Some(json!({"request_id": id, "rating": -1, "correction": "您好，我们早上八点开门。", "labels": ["wrong_fact"], "reviewer": "alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{fb}");
    assert_eq!(fb["reviewer"], "alice");

    let (status, item, _) = call(&app, "GET", &format!("/v1/interactions/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{item}");
    let stored = item.to_string();
    assert!(!stored.contains("13800138000"), "raw PII stored: {stored}");
    assert!(item["messages"][0]["content"].as_str().unwrap().contains("138****8000"), "{item}");
    assert_eq!(item["answer"], "您好，我们九点开门。");
    assert_eq!((item["finish_reason"].as_str(), item["prompt_tokens"].as_i64()), (Some("stop"), Some(9)));
    assert_eq!(item["model_version"], "tiny@abc");
    assert_eq!(item["guard"][0]["subject"], "CN_MOBILE");
    assert_eq!(item["feedback"][0]["correction"], "您好，我们早上八点开门。");
    let (status, streamed_item, _) = call(&app, "GET", &format!("/v1/interactions/{}", stream_id.unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(streamed_item["answer"], "您好，我们九点开门。");
    let (status, generated, _) = call(&app, "GET", &format!("/v1/interactions/{}", generate_id.unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((generated["route"].as_str(), generated["cache"].as_str()), (Some("generate"), Some("bypass")));

    // Listing with filters.
    let (_, low, _) = call(&app, "GET", "/v1/interactions?max_rating=0", None).await;
    assert_eq!(low["data"].as_array().unwrap().len(), 1);
    let (_, unreviewed, _) = call(&app, "GET", "/v1/interactions?reviewed=false&limit=10", None).await;
    assert_eq!(unreviewed["data"].as_array().unwrap().len(), 2);
    let (_, page, _) = call(&app, "GET", "/v1/interactions?limit=1", None).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, next, _) = call(&app, "GET", &format!("/v1/interactions?limit=2&cursor={cursor}"), None).await;
    assert_eq!(next["data"].as_array().unwrap().len(), 2);
    assert!(next["next_cursor"].is_null());
    assert_ne!(page["data"][0]["id"], next["data"][0]["id"]);
}

#[tokio::test]
async fn bad_feedback_is_named_and_unknown_ids_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _recorder) = app(dir.path()).await;
    let (status, e, _) = call(&app, "POST", "/v1/feedback", Some(json!({"request_id": "nope", "rating": 1}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "unknown_request_id");
    for (body, param) in [
        (json!({"rating": 1}), "request_id"),
        (json!({"request_id": "x", "rating": 7}), "rating"),
        (json!({"request_id": "x", "rating": "good"}), "rating"),
        (json!({"request_id": "x", "labels": "a"}), "labels"),
        (json!({"request_id": "x", "correction": 5}), "correction"),
        (json!({"request_id": "x", "stars": 5}), "stars"),
    ] {
        let (status, e, _) = call(&app, "POST", "/v1/feedback", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    for (query, param) in [
        ("limit=0", "limit"),
        ("reviewed=maybe", "reviewed"),
        ("since=yesterday", "since"),
        ("cursor=zzz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, e, _) = call(&app, "GET", &format!("/v1/interactions?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(e["error"]["param"], param, "{query}: {e}");
    }
    let (status, _, _) = call(&app, "GET", "/v1/interactions/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_writes_everything_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let (app, recorder) = app(dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let ask = json!({"model": "tiny", "messages": [{"role": "user", "content": format!("question {i}")}]});
        ids.push(call(&app, "POST", "/v1/chat/completions", Some(ask)).await.2.unwrap());
    }
    recorder.shutdown().await;
    assert_eq!(recorder.store().unwrap().count_interactions().await.unwrap(), 50);
}

#[tokio::test]
async fn a_dead_store_never_fails_requests_and_its_backlog_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecorderConfig { buffer: 4, batch: 1, flush_interval: std::time::Duration::from_millis(10) };
    let (app, recorder) = app_with(dir.path(), settings).await;
    recorder.store().unwrap().close().await; // every write now fails; the writer retries with backoff
    for i in 0..30 {
        let ask = json!({"model": "tiny", "messages": [{"role": "user", "content": format!("q{i}")}]});
        let (status, body, _) = call(&app, "POST", "/v1/chat/completions", Some(ask)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // One record in the writer's hands, at most 4 waiting: the rest were dropped and counted.
    assert!(recorder.dropped() >= 25, "dropped {}", recorder.dropped());
}
