//! Every error path and the wire shapes, through `Router::oneshot` with a fake backend.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fake, Script};
use http_body_util::BodyExt;
use luodi_server::app::{router, ApiKeys};
use luodi_server::backend::BackendError;
use luodi_server::config::ServerConfig;
use luodi_server::state::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

mod common;

/// Answers "Hello, 世界" in three tokens, with a context of 100.
fn hello() -> Fake {
    Fake { prompt_tokens: 5, context_length: 100, ..Fake::plain(Script::Tokens(vec!["Hello", ", ", "世界"])) }
}

fn app_with(fake: Fake, keys: Vec<&str>, config: ServerConfig) -> (axum::Router, Arc<Fake>) {
    let fake = Arc::new(fake);
    let state = common::state(fake.clone(), config);
    (router(state, ApiKeys::new(keys.into_iter().map(String::from).collect())), fake)
}

fn app() -> axum::Router {
    app_with(hello(), vec![], ServerConfig::default()).0
}

async fn call(
    app: axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn chat_body() -> Value {
    json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_openai_error(status: StatusCode, body: &[u8], want: StatusCode, needle: &str) {
    assert_eq!(status, want, "{}", String::from_utf8_lossy(body));
    let v = json_of(body);
    let e = &v["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(e.get(field).is_some(), "error lacks `{field}`: {v}");
    }
    assert!(e["message"].as_str().unwrap().contains(needle), "{v}");
}

#[tokio::test]
async fn chat_completion_shape() {
    let (status, headers, body) = call(app(), "POST", "/v1/chat/completions", Some(chat_body()), None).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-request-id"));
    let v = json_of(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello, 世界");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"], json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}));
}

#[tokio::test]
async fn streaming_with_usage_ends_with_done() {
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, bytes) = call(app(), "POST", "/v1/chat/completions", Some(body), None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let datas: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?.get("delta")?.get("content")?.as_str()).collect();
    assert_eq!(content, "Hello, 世界");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 8);
    assert!(chunks.iter().any(|c| c["choices"].get(0).is_some_and(|ch| ch["finish_reason"] == "stop")));
}

#[tokio::test]
async fn completions_and_generate_and_models() {
    let (s, _, b) =
        call(app(), "POST", "/v1/completions", Some(json!({"model": "tiny", "prompt": "Once"})), None).await;
    assert_eq!(s, 200);
    assert_eq!(json_of(&b)["choices"][0]["text"], "Hello, 世界");
    let (s, _, b) = call(app(), "POST", "/generate", Some(json!({"prompt": "hi", "max_length": 100})), None).await;
    assert_eq!(s, 200);
    assert_eq!(json_of(&b)["response"], "Hello, 世界");
    let (s, _, b) = call(app(), "GET", "/v1/models", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(json_of(&b)["data"][0]["id"], "tiny");
}

#[tokio::test]
async fn generate_maps_max_length_and_defaults() {
    let (app, fake) = app_with(hello(), vec![], ServerConfig::default());
    call(app.clone(), "POST", "/generate", Some(json!({"prompt": "hi", "max_length": 7})), None).await;
    call(app, "POST", "/generate", Some(json!({"prompt": "hi"})), None).await;
    let max_tokens: Vec<usize> = fake.seen.lock().unwrap().iter().map(|r| r.max_tokens).collect();
    assert_eq!(max_tokens, vec![7, 100]);
    let (s, _, b) = call(
        app_with(hello(), vec![], ServerConfig::default()).0,
        "POST",
        "/generate",
        Some(json!({"max_length": 5})),
        None,
    )
    .await;
    assert_openai_error(s, &b, StatusCode::BAD_REQUEST, "`prompt` is required");
}

#[tokio::test]
async fn invalid_fields_are_400_naming_the_field() {
    let mut body = chat_body();
    body["temperature"] = json!(9);
    let (s, _, b) = call(app(), "POST", "/v1/chat/completions", Some(body), None).await;
    assert_openai_error(s, &b, StatusCode::BAD_REQUEST, "`temperature` must be in [0, 2]");
    assert_eq!(json_of(&b)["error"]["param"], "temperature");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let req = Request::builder().method("POST").uri("/v1/chat/completions").body(Body::from("{\"model\": ")).unwrap();
    let resp = app().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST, "not valid JSON");
}

#[tokio::test]
async fn unknown_model_is_404() {
    let mut body = chat_body();
    body["model"] = json!("gpt-4o");
    let (s, _, b) = call(app(), "POST", "/v1/chat/completions", Some(body), None).await;
    assert_openai_error(s, &b, StatusCode::NOT_FOUND, "`gpt-4o` does not exist");
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let (app, _) = app_with(hello(), vec!["s3cret", "other"], ServerConfig::default());
    let (s, _, b) = call(app.clone(), "POST", "/v1/chat/completions", Some(chat_body()), None).await;
    assert_openai_error(s, &b, StatusCode::UNAUTHORIZED, "API key");
    let (s, _, _) = call(app.clone(), "POST", "/v1/chat/completions", Some(chat_body()), Some("wrong")).await;
    assert_eq!(s, 401);
    let (s, _, _) = call(app.clone(), "POST", "/v1/chat/completions", Some(chat_body()), Some("other")).await;
    assert_eq!(s, 200);
    // Liveness and metrics stay open for probes and scrapers.
    let (s, _, _) = call(app, "GET", "/health", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let config = ServerConfig { max_body_bytes: 64, ..Default::default() };
    let (app, _) = app_with(hello(), vec![], config);
    let mut body = chat_body();
    body["messages"][0]["content"] = json!("x".repeat(500));
    let (s, _, b) = call(app, "POST", "/v1/chat/completions", Some(body), None).await;
    assert_openai_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "limit of 64 bytes");
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let (app, _) = app_with(
        Fake { refuse: Some(BackendError::Overloaded { retry_after: 2 }), ..hello() },
        vec![],
        ServerConfig::default(),
    );
    let (s, headers, b) = call(app, "POST", "/v1/chat/completions", Some(chat_body()), None).await;
    assert_openai_error(s, &b, StatusCode::TOO_MANY_REQUESTS, "busy");
    assert_eq!(headers["retry-after"], "2");
}

#[tokio::test]
async fn not_ready_is_503() {
    let (app, _) = app_with(Fake { ready: false, ..hello() }, vec![], ServerConfig::default());
    let (s, _, _) = call(app.clone(), "GET", "/ready", None, None).await;
    assert_eq!(s, 503);
    let (s, headers, b) = call(app.clone(), "POST", "/v1/chat/completions", Some(chat_body()), None).await;
    assert_openai_error(s, &b, StatusCode::SERVICE_UNAVAILABLE, "not loaded");
    assert!(headers.contains_key("retry-after"));
    let (s, _, _) = call(app, "GET", "/health", None, None).await;
    assert_eq!(s, 200, "liveness does not depend on the model");
}

#[tokio::test]
async fn context_overflow_is_400_with_the_numbers() {
    let err = BackendError::ContextOverflow { prompt_tokens: 120, max_tokens: 10, context_length: 100 };
    let (app, _) = app_with(Fake { fail: Some(err), ..hello() }, vec![], ServerConfig::default());
    let (s, _, b) = call(app, "POST", "/v1/chat/completions", Some(chat_body()), None).await;
    assert_openai_error(s, &b, StatusCode::BAD_REQUEST, "maximum context length is 100 tokens");
    assert_eq!(json_of(&b)["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn unknown_route_and_method_are_openai_errors() {
    let (s, _, b) = call(app(), "GET", "/v1/nope", None, None).await;
    assert_openai_error(s, &b, StatusCode::NOT_FOUND, "/v1/nope");
    let (s, _, b) = call(app(), "GET", "/v1/chat/completions", None, None).await;
    assert_openai_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    call(app(), "GET", "/v1/models", None, None).await;
    let (s, _, b) = call(app(), "GET", "/metrics", None, None).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(text.contains("luodi_http_requests_total{route=\"/v1/models\",status=\"200\"}"), "{text}");
    assert!(text.contains("luodi_requests_waiting"), "{text}");
}

#[tokio::test]
async fn request_id_is_echoed() {
    let req = Request::builder().uri("/health").header("x-request-id", "abc-123").body(Body::empty()).unwrap();
    let resp = app().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}

struct FakeEmbedder;

impl luodi_server::backend::Embedder for FakeEmbedder {
    fn model_id(&self) -> &str {
        "emb"
    }
    fn max_tokens(&self) -> usize {
        8
    }
    fn embed(&self, inputs: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError> {
        Ok((inputs.iter().map(|s| vec![s.len() as f32, 0.5]).collect(), inputs.iter().map(|_| 3).collect()))
    }
}

fn app_with_embedder() -> axum::Router {
    let state = AppState {
        embedder: Some(Arc::new(FakeEmbedder)),
        ..common::state(Arc::new(hello()), ServerConfig::default())
    };
    router(state, ApiKeys::default())
}

#[tokio::test]
async fn embeddings_float_base64_and_errors() {
    let (s, _, b) =
        call(app_with_embedder(), "POST", "/v1/embeddings", Some(json!({"model": "emb", "input": ["ab", "c"]})), None)
            .await;
    assert_eq!(s, 200);
    let v = json_of(&b);
    assert_eq!(v["data"][0]["embedding"], json!([2.0, 0.5]));
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    let (_, _, b) = call(
        app_with_embedder(),
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "emb", "input": "ab", "encoding_format": "base64"})),
        None,
    )
    .await;
    // [2.0, 0.5] as little-endian f32 bytes, base64.
    assert_eq!(json_of(&b)["data"][0]["embedding"], "AAAAQAAAAD8=");
    for (body, status, needle) in [
        (json!({"model": "emb", "input": []}), 400, "must not be an empty list"),
        (json!({"model": "emb", "input": [1]}), 400, "`input` must be a string or a list of strings"),
        (json!({"model": "emb"}), 400, "`input` is required"),
        (
            json!({"model": "emb", "input": "x", "encoding_format": "hex"}),
            400,
            "`encoding_format` must be float or base64",
        ),
        (json!({"model": "other", "input": "x"}), 404, "`other` does not exist"),
    ] {
        let (s, _, b) = call(app_with_embedder(), "POST", "/v1/embeddings", Some(body), None).await;
        assert_openai_error(s, &b, StatusCode::from_u16(status).unwrap(), needle);
    }
    // Without an embedding model the route answers 404 for any model name.
    let (s, _, b) = call(app(), "POST", "/v1/embeddings", Some(json!({"model": "emb", "input": "x"})), None).await;
    assert_openai_error(s, &b, StatusCode::NOT_FOUND, "`emb` does not exist");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    // Served outside the API-key layer.
    let (app, _) = app_with(hello(), vec!["secret"], ServerConfig::default());
    let (s, headers, b) = call(app, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc = json_of(&b);
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."), "not OpenAPI 3.x: {}", doc["openapi"]);
    for (path, method) in [
        ("/v1/chat/completions", "post"),
        ("/v1/completions", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/models", "get"),
        ("/generate", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let chat = &doc["paths"]["/v1/chat/completions"]["post"];
    for status in ["200", "400", "401", "404", "413", "429", "503"] {
        assert!(chat["responses"][status].is_object(), "chat lacks {status}");
    }
    assert!(chat["responses"]["200"]["content"]["text/event-stream"].is_object());
    // The sampling fields are one schema, flattened into each generating request.
    let chat_request = &doc["components"]["schemas"]["ChatCompletionRequest"];
    assert_eq!(chat_request["allOf"][0]["$ref"], "#/components/schemas/SamplingFields");
    let temperature = &doc["components"]["schemas"]["SamplingFields"]["properties"]["temperature"];
    assert_eq!((temperature["minimum"].as_f64(), temperature["maximum"].as_f64()), (Some(0.0), Some(2.0)));
}

/// A whole answer and the same answer streamed carry the same text and logprobs, in both
/// wire formats (they are one pipeline; streamed text completions once lost `top_logprobs`).
#[tokio::test]
async fn streamed_and_whole_answers_carry_the_same_logprobs() {
    let app = app();
    for (path, mut body) in [
        ("/v1/completions", json!({"model": "tiny", "prompt": "hi", "logprobs": 2})),
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 2}),
        ),
    ] {
        let (status, _, whole) = call(app.clone(), "POST", path, Some(body.clone()), None).await;
        assert_eq!(status, StatusCode::OK);
        let whole = json_of(&whole);
        body["stream"] = json!(true);
        let (status, _, sse) = call(app.clone(), "POST", path, Some(body), None).await;
        assert_eq!(status, StatusCode::OK);
        let sse = String::from_utf8(sse).unwrap();
        let chunks: Vec<Value> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let lp = &whole["choices"][0]["logprobs"];
        if path == "/v1/completions" {
            let mut streamed = (String::new(), vec![], vec![], vec![]);
            for c in &chunks {
                let choice = &c["choices"][0];
                streamed.0 += choice["text"].as_str().unwrap();
                if !choice["logprobs"].is_null() {
                    streamed.1.extend(choice["logprobs"]["tokens"].as_array().unwrap().clone());
                    streamed.2.extend(choice["logprobs"]["token_logprobs"].as_array().unwrap().clone());
                    streamed
                        .3
                        .extend(choice["logprobs"]["top_logprobs"].as_array().expect("top_logprobs in chunks").clone());
                }
            }
            assert_eq!(streamed.0, whole["choices"][0]["text"]);
            assert_eq!(Value::from(streamed.1), lp["tokens"]);
            assert_eq!(Value::from(streamed.2), lp["token_logprobs"]);
            assert_eq!(Value::from(streamed.3), lp["top_logprobs"]);
            assert_eq!(lp["top_logprobs"][2]["世界"], json!(-2.5));
        } else {
            let (mut text, mut content) = (String::new(), vec![]);
            for c in &chunks {
                let choice = &c["choices"][0];
                text += choice["delta"]["content"].as_str().unwrap_or("");
                if !choice["logprobs"].is_null() {
                    content.extend(choice["logprobs"]["content"].as_array().unwrap().clone());
                }
            }
            assert_eq!(text, whole["choices"][0]["message"]["content"]);
            assert_eq!(Value::from(content), lp["content"]);
            assert_eq!(lp["content"].as_array().unwrap().len(), 3);
        }
    }
}

/// The console is one self-contained page: HTML, not cached, and a policy that allows no
/// script or request from anywhere else.
#[tokio::test]
async fn console_is_one_self_contained_page() {
    let (status, headers, body) = call(app(), "GET", "/console", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("/v1/interactions") && page.contains("/v1/feedback"), "the page talks to the review API");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing is loaded from outside");
}
