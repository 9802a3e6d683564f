//! The server built from settings, in process: no key anywhere narrows the address to
//! loopback and leaves the API open; a configured key keeps the address and closes the API;
//! keys created in the store are found at start-up, and what they record is their id.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fake, Script};
use luodi_server::builder::{build, Auth, Built, Parts};
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use tower::ServiceExt;

fn parts() -> Parts {
    Parts {
        backend: Fake::new(Script::Tokens(vec!["ok"])),
        embedder: None,
        chat_template: true,
        model_version: "tiny@test".into(),
        guard: Guarding::default(),
        cache: None,
    }
}

async fn status(built: &Built, key: Option<&str>) -> StatusCode {
    let mut req =
        Request::builder().method("POST").uri("/v1/chat/completions").header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let body = r#"{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}"#;
    built.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap().status()
}

fn config(host: &str) -> ServerConfig {
    let mut c = ServerConfig { host: host.into(), ..Default::default() };
    c.store.enabled = false;
    c
}

#[tokio::test]
async fn no_keys_means_loopback_only_and_open() {
    let built = build(config("0.0.0.0"), parts(), "unused").await.unwrap();
    assert_eq!((built.config.host.as_str(), built.auth), ("127.0.0.1", Auth::OpenOnLoopback));
    assert_eq!(status(&built, None).await, StatusCode::OK);
}

#[tokio::test]
async fn a_configured_key_keeps_the_address_and_closes_the_api() {
    let mut c = config("0.0.0.0");
    c.api_keys = vec!["secret-key".into()];
    let built = build(c, parts(), "unused").await.unwrap();
    assert_eq!((built.config.host.as_str(), built.auth), ("0.0.0.0", Auth::Keys));
    assert_eq!(status(&built, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&built, Some("secret-key")).await, StatusCode::OK);
}

#[tokio::test]
async fn stored_keys_are_found_at_start_up_and_recorded_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    let store = luodi_store::Store::open(&url, "luodi_").await.unwrap();
    let (info, key) = store.create_key("app", luodi_store::Role::Client).await.unwrap();
    let mut c = config("0.0.0.0");
    c.store.enabled = true;
    let built = build(c, parts(), &url).await.unwrap();
    assert_eq!((built.config.host.as_str(), built.auth), ("0.0.0.0", Auth::Keys));
    assert_eq!(status(&built, Some(&key)).await, StatusCode::OK);
    assert_eq!(status(&built, None).await, StatusCode::UNAUTHORIZED);
    let recorder = built.recorder.as_ref().unwrap();
    recorder.flush().await;
    let page = store.list(&Default::default(), None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].api_key_id.as_deref(), Some(info.id.as_str()));
}

#[tokio::test]
async fn bad_settings_are_errors_that_name_them() {
    let mut c = config("127.0.0.1");
    c.max_connections = 0;
    let err = build(c, parts(), "unused").await.err().unwrap();
    assert!(err.contains("max_connections"), "{err}");
    let mut c = config("127.0.0.1");
    c.store.enabled = true;
    c.store.table_prefix = "Bad-Prefix".into();
    let err = build(c, parts(), "sqlite::memory:").await.err().unwrap();
    assert!(err.contains("table_prefix"), "{err}");
}
