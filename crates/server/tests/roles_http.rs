//! Roles through `Router::oneshot`: keys created in the real store (SQLite file) with each
//! role, checked by the key ring; configured keys keep full rights; revocation takes effect
//! on the ring's next read.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use luodi_server::app::{router, ApiKeys, KeyRing};
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use luodi_server::state::AppState;
use luodi_store::{Role, Store};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

async fn status(app: &axum::Router, method: &str, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let s = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_role_reaches_its_routes_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("k.db").display()), "luodi_").await.unwrap();
    let (client_info, client) = store.create_key("app", Role::Client).await.unwrap();
    let (reviewer_info, reviewer) = store.create_key("qa", Role::Reviewer).await.unwrap();
    let (_, admin) = store.create_key("ops", Role::Admin).await.unwrap();
    // The background re-read is slow on purpose: the test refreshes the ring itself.
    let ring = KeyRing::start(store.clone(), Duration::from_secs(3600)).await.unwrap();
    let config = ServerConfig::default();
    let recorder = luodi_server::recorder::Recorder::start(store.clone(), Default::default());
    let state = AppState {
        backend: common::Fake::with_usage(common::Script::Tokens(vec!["ok"]), 1),
        embedder: None,
        guard: Guarding::from_config(&config).unwrap(),
        config: Arc::new(config),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
        cache: None,
        model_version: "tiny@1".into(),
        recorder: Some(recorder.clone()),
    };
    let app = router(state, ApiKeys::new(vec!["configured-key".into()]).with_ring(ring.clone()));
    let chat = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]});

    for key in [&client, &reviewer, &admin, &"configured-key".to_string()] {
        assert_eq!(
            status(&app, "POST", "/v1/chat/completions", key, Some(chat.clone())).await.0,
            StatusCode::OK,
            "{key}"
        );
    }
    // Interactions record the id `luodi keys list` shows (a configured key: a hash id).
    recorder.flush().await;
    let page = store.list(&Default::default(), None, 10).await.unwrap();
    let mut recorded: Vec<String> = page.items.iter().filter_map(|i| i.api_key_id.clone()).collect();
    recorded.sort();
    let listed: Vec<String> = store.list_keys().await.unwrap().into_iter().map(|k| k.id).collect();
    assert!(listed.contains(&client_info.id));
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    for id in &listed {
        assert!(recorded.contains(id), "{id} not in {recorded:?}");
    }
    assert!(recorded.iter().any(|id| id.starts_with("config-") && !id.contains("configured-key")), "{recorded:?}");
    let (s, e) = status(&app, "GET", "/v1/interactions", &client, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(e["error"]["code"], "insufficient_role");
    assert!(e["error"]["message"].as_str().unwrap().contains("`client`"), "{e}");
    assert_eq!(status(&app, "GET", "/v1/interactions", &reviewer, None).await.0, StatusCode::OK);
    assert_eq!(status(&app, "GET", "/admin/cache/stats", &reviewer, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(status(&app, "GET", "/admin/cache/stats", &admin, None).await.0, StatusCode::OK);
    assert_eq!(status(&app, "GET", "/admin/cache/stats", "configured-key", None).await.0, StatusCode::OK);
    // Wrong secret with a real id, and garbage, are 401.
    // The last character is changed to a different one (the secret is hex: never to itself).
    let last = if reviewer.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &reviewer[..reviewer.len() - 1]);
    assert_ne!(forged, reviewer);
    assert_eq!(status(&app, "GET", "/v1/models", &forged, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&app, "GET", "/v1/models", "nope", None).await.0, StatusCode::UNAUTHORIZED);
    // Revoked: refused once the ring has re-read the store.
    store.revoke_key(&reviewer_info.id).await.unwrap();
    ring.refresh().await.unwrap();
    assert_eq!(status(&app, "GET", "/v1/models", &reviewer, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&app, "GET", "/v1/models", &client, None).await.0, StatusCode::OK);
}
