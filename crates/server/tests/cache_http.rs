//! The response cache in the request path, through `Router::oneshot` with a fake backend (so
//! every generation is counted): hits, bypasses, what is never stored, replayed streams,
//! model versions, the semantic lookup, and Redis (the real one on 127.0.0.1:6379, and an
//! unreachable one that must not fail requests).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fake, Script};
use http_body_util::BodyExt;
use luodi_server::app::{router, ApiKeys};
use luodi_server::backend::{BackendError, Embedder};
use luodi_server::config::ServerConfig;
use luodi_server::state::AppState;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

mod common;

/// Embeds by keyword so tests control similarity: questions about "hours" point one way,
/// about "password" another.
struct KeywordEmbedder;

impl Embedder for KeywordEmbedder {
    fn model_id(&self) -> &str {
        "minilm-l6"
    }
    fn max_tokens(&self) -> usize {
        256
    }
    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError> {
        let v = inputs
            .iter()
            .map(|t| {
                let t = t.to_lowercase();
                let v = [t.contains("hours") as u8 as f32, t.contains("password") as u8 as f32, 0.1];
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / n).collect()
            })
            .collect();
        Ok((v, inputs.iter().map(|_| 3).collect()))
    }
}

fn app_with(
    toml: &str,
    tokens: Vec<&'static str>,
    model_version: &str,
    cache: Option<Arc<luodi_cache::ResponseCache>>,
) -> (axum::Router, Arc<Fake>) {
    let config: ServerConfig = toml::from_str(toml).unwrap();
    let fake = Fake::with_usage(Script::Tokens(tokens), 7);
    let cache = cache.or_else(|| match config.cache.mode {
        luodi_cache::CacheMode::Off => None,
        _ => Some(Arc::new(luodi_cache::ResponseCache::new(config.cache.clone()).unwrap())),
    });
    CACHES.lock().unwrap().extend(cache.clone());
    let state = AppState {
        embedder: Some(Arc::new(KeywordEmbedder)),
        cache,
        model_version: model_version.into(),
        ..common::state(fake.clone(), config)
    };
    (router(state, ApiKeys::default()), fake)
}

fn default_app(toml: &str) -> (axum::Router, Arc<Fake>) {
    app_with(toml, vec!["We are open ", "9 to 5."], "tiny@v1", None)
}

struct Reply {
    status: StatusCode,
    cache: String,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn post(app: &axum::Router, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method("POST").uri(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let cache = headers.get("x-cache").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply { status, cache, headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

fn chat(question: &str) -> Value {
    json!({"model": "tiny", "temperature": 0, "messages": [{"role": "user", "content": question}]})
}

fn content(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

/// Every cache this test binary built, so [`settle`] can wait for their writes.
static CACHES: Mutex<Vec<Arc<luodi_cache::ResponseCache>>> = Mutex::new(Vec::new());

/// Waits until the background stores of the answers so far have ended (the cache's own
/// in-flight count, not a sleep). Waiting for another test's cache too is harmless.
async fn settle() {
    let caches: Vec<_> = CACHES.lock().unwrap().clone();
    for cache in caches {
        cache.writes().settled().await;
    }
}

#[tokio::test]
async fn a_repeated_question_is_a_hit_as_json_and_as_a_stream() {
    let (app, fake) = default_app("");
    let first = post(&app, "/v1/chat/completions", chat("What are your opening hours?"), &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (StatusCode::OK, "miss"));
    settle().await;
    // Whitespace differences normalize to the same key.
    let second = post(&app, "/v1/chat/completions", chat("  What are your opening   hours? "), &[]).await;
    assert_eq!(second.cache, "hit");
    assert_eq!(content(&second.body), "We are open 9 to 5.");
    let v: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(fake.generations(), 1);

    let mut body = chat("What are your opening hours?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = post(&app, "/v1/chat/completions", body, &[]).await;
    assert_eq!(streamed.cache, "hit");
    let text: String = streamed
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "We are open 9 to 5.");
    assert!(streamed.body.contains("\"finish_reason\":\"stop\"") && streamed.body.contains("\"completion_tokens\":2"));
    assert!(streamed.body.trim_end().ends_with("data: [DONE]"));
    assert_eq!(fake.generations(), 1);

    // A different parameter that matters is a different entry; text completions are apart too.
    let mut longer = chat("What are your opening hours?");
    longer["max_tokens"] = json!(5);
    assert_eq!(post(&app, "/v1/chat/completions", longer, &[]).await.cache, "miss");
    let text = json!({"model": "tiny", "temperature": 0, "prompt": "What are your opening hours?"});
    assert_eq!(post(&app, "/v1/completions", text.clone(), &[]).await.cache, "miss");
    settle().await;
    assert_eq!(post(&app, "/v1/completions", text, &[]).await.cache, "hit");
}

#[tokio::test]
async fn bypasses_sampling_opt_outs_and_bad_values() {
    let (app, fake) = default_app("");
    let mut hot = chat("hi");
    hot["temperature"] = json!(0.8);
    for _ in 0..2 {
        assert_eq!(post(&app, "/v1/chat/completions", hot.clone(), &[]).await.cache, "bypass");
    }
    // A fixed seed makes sampling deterministic: cached.
    hot["seed"] = json!(42);
    post(&app, "/v1/chat/completions", hot.clone(), &[]).await;
    settle().await;
    assert_eq!(post(&app, "/v1/chat/completions", hot, &[]).await.cache, "hit");

    let q = chat("Do you have parking?");
    assert_eq!(post(&app, "/v1/chat/completions", q.clone(), &[("cache-control", "no-store")]).await.cache, "bypass");
    settle().await;
    // no-store stored nothing; no-cache skips the lookup but stores the fresh answer.
    assert_eq!(post(&app, "/v1/chat/completions", q.clone(), &[("cache-control", "no-cache")]).await.cache, "miss");
    settle().await;
    assert_eq!(post(&app, "/v1/chat/completions", q.clone(), &[]).await.cache, "hit");
    let mut opt_out = q.clone();
    opt_out["cache"] = json!(false);
    assert_eq!(post(&app, "/v1/chat/completions", opt_out, &[]).await.cache, "bypass");
    let mut bad = q;
    bad["cache"] = json!("sometimes");
    let r = post(&app, "/v1/chat/completions", bad, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("\"param\":\"cache\""), "{}", r.body);
    // Logprobs are not kept, so such requests bypass.
    let mut lp = chat("Do you have parking?");
    lp["logprobs"] = json!(true);
    assert_eq!(post(&app, "/v1/chat/completions", lp, &[]).await.cache, "bypass");
    let generations = fake.generations();
    assert_eq!(generations, 7, "2 hot + 1 seeded + no-store + no-cache + opt-out + logprobs");

    let (off, _) = default_app("[cache]\nmode = \"off\"\n");
    assert_eq!(post(&off, "/v1/chat/completions", chat("hi"), &[]).await.cache, "bypass");
    let (always, _) = default_app("[cache]\nmode = \"always\"\n");
    let mut hot = chat("hi");
    hot["temperature"] = json!(0.8);
    post(&always, "/v1/chat/completions", hot.clone(), &[]).await;
    settle().await;
    assert_eq!(post(&always, "/v1/chat/completions", hot, &[]).await.cache, "hit");
}

#[tokio::test]
async fn prompts_with_pii_and_moderated_answers_are_never_stored() {
    let (app, fake) = default_app("");
    let q = chat("My ID is 41010519590722056X, what are your opening hours?");
    for _ in 0..2 {
        assert_eq!(post(&app, "/v1/chat/completions", q.clone(), &[]).await.cache, "bypass");
        settle().await;
    }
    // The model saw the masked prompt, never the value.
    let seen = format!("{:?}", fake.last_prompt());
    assert!(!seen.contains("41010519590722056X"), "{seen}");

    // An answer the output lexicon touched (flagged) is served but not stored.
    let toml = "[[guard.lexicons]]\ncategory = \"watch\"\naction = \"flag\"\nterms = [\"open\"]\n";
    let (app, fake) = app_with(toml, vec!["We are open ", "9 to 5."], "tiny@v1", None);
    for _ in 0..2 {
        assert_eq!(post(&app, "/v1/chat/completions", chat("Hours?"), &[]).await.cache, "miss");
        settle().await;
    }
    assert_eq!(fake.generations(), 2);
}

#[tokio::test]
async fn a_new_model_version_never_sees_old_answers() {
    let cache = Arc::new(luodi_cache::ResponseCache::new(Default::default()).unwrap());
    let (v1, _) = app_with("", vec!["old"], "tiny@v1", Some(cache.clone()));
    let (v2, _) = app_with("", vec!["new"], "tiny@v2", Some(cache.clone()));
    post(&v1, "/v1/chat/completions", chat("hi"), &[]).await;
    settle().await;
    let r = post(&v2, "/v1/chat/completions", chat("hi"), &[]).await;
    assert_eq!((r.cache.as_str(), content(&r.body).as_str()), ("miss", "new"));
    // Purging v1 leaves v2's answer.
    cache.purge(Some("tiny@v1")).await.unwrap();
    settle().await;
    assert_eq!(post(&v1, "/v1/chat/completions", chat("hi"), &[]).await.cache, "miss");
    assert_eq!(post(&v2, "/v1/chat/completions", chat("hi"), &[]).await.cache, "hit");
}

#[tokio::test]
async fn semantic_hits_only_for_agreeing_single_turn_questions() {
    let (app, fake) = default_app("[cache.semantic]\nenabled = true\n");
    post(&app, "/v1/chat/completions", chat("What are your opening hours?"), &[]).await;
    settle().await;
    // Same terms, different politeness and embedding close: a semantic hit, naming its source.
    let r = post(&app, "/v1/chat/completions", chat("Hi, what are your opening hours, please?"), &[]).await;
    assert_eq!(r.cache, "semantic-hit");
    assert_eq!(content(&r.body), "We are open 9 to 5.");
    assert_eq!(r.headers["x-cache-question"], "What%20are%20your%20opening%20hours%3F");
    assert!(r.headers["x-cache-similarity"].to_str().unwrap().parse::<f32>().unwrap() > 0.9);
    // Close embedding but different terms: not served.
    assert_eq!(post(&app, "/v1/chat/completions", chat("What are your closing hours?"), &[]).await.cache, "miss");
    // Multi-turn conversations never match semantically.
    let multi = json!({"model": "tiny", "temperature": 0, "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "What are your opening hours, please?"}]});
    assert_eq!(post(&app, "/v1/chat/completions", multi, &[]).await.cache, "miss");
    // Another system prompt is another context.
    let sys = json!({"model": "tiny", "temperature": 0, "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi, what are your opening hours, please?"}]});
    assert_eq!(post(&app, "/v1/chat/completions", sys, &[]).await.cache, "miss");
    assert_eq!(fake.generations(), 4);
}

fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("luodi-test:{name}:{}:{nanos}", std::process::id())
}

#[tokio::test]
async fn two_replicas_share_hits_through_redis() {
    let prefix = unique_prefix("replicas");
    let toml = format!("[cache]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{prefix}\"\n");
    let (a, fake_a) = app_with(&toml, vec!["shared ", "answer"], "tiny@v1", None);
    let (b, fake_b) = app_with(&toml, vec!["never ", "used"], "tiny@v1", None);
    assert_eq!(post(&a, "/v1/chat/completions", chat("营业时间是几点？"), &[]).await.cache, "miss");
    settle().await;
    let r = post(&b, "/v1/chat/completions", chat("营业时间是几点？"), &[]).await;
    assert_eq!((r.cache.as_str(), content(&r.body).as_str()), ("hit", "shared answer"));
    assert_eq!((fake_a.generations(), fake_b.generations()), (1, 0));
    let cache = luodi_cache::ResponseCache::new(toml::from_str::<ServerConfig>(&toml).unwrap().cache).unwrap();
    cache.purge(None).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_means_misses_never_errors() {
    let toml = "[cache]\nredis_url = \"redis://127.0.0.1:1\"\nredis_timeout_ms = 200\n";
    let (app, fake) = app_with(toml, vec!["fine"], "tiny@v1", None);
    for _ in 0..3 {
        let r = post(&app, "/v1/chat/completions", chat("hi"), &[]).await;
        assert_eq!((r.status, r.cache.as_str(), content(&r.body).as_str()), (StatusCode::OK, "miss", "fine"));
    }
    assert_eq!(fake.generations(), 3);
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(Request::builder().uri(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn admin_stats_and_purge() {
    let (app, _) = default_app("");
    post(&app, "/v1/chat/completions", chat("one"), &[]).await;
    post(&app, "/v1/chat/completions", chat("two"), &[]).await;
    settle().await;
    let (status, stats) = get(&app, "/admin/cache/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (stats["store"].as_str(), stats["entries"].as_u64(), stats["model_version"].as_str()),
        (Some("memory"), Some(2), Some("tiny@v1"))
    );
    let r = post(&app, "/admin/cache/purge", json!({"model_version": 3}), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("\"param\":\"model_version\""), "{}", r.body);
    let r = post(&app, "/admin/cache/purge", json!({"version": "x"}), &[]).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("unknown field `version`"), "{}", r.body);
    // Another version's purge leaves these; an empty object removes all.
    let r = post(&app, "/admin/cache/purge", json!({"model_version": "tiny@v0"}), &[]).await;
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["removed"], 0);
    let r = post(&app, "/admin/cache/purge", json!({}), &[]).await;
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["removed"], 2);
    assert_eq!(post(&app, "/v1/chat/completions", chat("one"), &[]).await.cache, "miss");
    let (off, _) = default_app("[cache]\nmode = \"off\"\n");
    assert_eq!(get(&off, "/admin/cache/stats").await.1, json!({"enabled": false}));
}
