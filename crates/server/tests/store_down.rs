//! A store that is unreachable when the server starts (a PostgreSQL URL on a port nothing
//! listens on): the server still answers, `/ready` says the store is connecting, the review
//! API is a 503 naming the store, stored API keys are not guessed at (503, retry), configured
//! keys work, and records wait in the bounded buffer, the overflow dropped and counted.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fake, Script};
use http_body_util::BodyExt;
use luodi_server::app::{router, ApiKeys, KeyRing};
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use luodi_server::recorder::{Recorder, RecorderConfig};
use luodi_server::state::AppState;
use luodi_server::store_link::{Backoff, StoreLink};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// A port on this machine that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_unreachable_store_at_start_up_does_not_stop_serving() {
    let url = format!("postgres://127.0.0.1:{}/test", closed_port());
    let backoff = Backoff { first: Duration::from_millis(50), max: Duration::from_millis(200) };
    let link = StoreLink::connect("test store".into(), backoff, move || {
        let url = url.clone();
        async move { luodi_store::Store::open(&url, "luodi_").await }
    });
    let ring = KeyRing::linked(link.clone(), Duration::from_secs(5));
    let recorder = Recorder::linked(link.clone(), RecorderConfig { buffer: 2, ..Default::default() });
    let config = ServerConfig::default();
    let state = AppState {
        backend: Fake::new(Script::Tokens(vec!["still ", "here"])),
        embedder: None,
        guard: Guarding::from_config(&config).unwrap(),
        cache: None,
        model_version: "tiny@test".into(),
        recorder: Some(recorder.clone()),
        config: Arc::new(config),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
    };
    let app = router(state, ApiKeys::new(vec!["configured".into()]).with_ring(ring));
    let chat = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]});

    for _ in 0..3 {
        let (status, v) = call(&app, "POST", "/v1/chat/completions", Some("configured"), Some(chat.clone())).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "still here");
    }
    let (status, v) = call(&app, "GET", "/ready", None, None).await;
    assert_eq!((status, v["store"].as_str()), (StatusCode::OK, Some("connecting")), "{v}");
    // The review API needs the store: a 503 that says so.
    let (status, v) = call(&app, "GET", "/v1/interactions", Some("configured"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "store_unavailable");
    assert!(v["error"]["message"].as_str().unwrap().contains("interaction store"), "{v}");
    // A key that may be a stored one cannot be checked yet: 503 (retry), not 401.
    let (status, v) = call(&app, "GET", "/v1/models", Some("ld_0123abcd_0123456789abcdef0123456789abcdef"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // Three answers, a buffer of two: one record dropped and counted, two still waiting.
    assert_eq!(recorder.dropped(), 1);
    assert!(link.get().is_none());
}
