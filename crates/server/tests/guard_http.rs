//! The guard in the request path, through `Router::oneshot` with a fake backend: what the
//! backend sees, what the client sees, how blocks end requests and streams.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fake, Script};
use http_body_util::BodyExt;
use luodi_server::backend::Prompt;
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

mod common;

const ID: &str = "41010519590722056X";
const MOBILE: &str = "13800138000";

fn make_app(toml: &str, script: Script) -> (axum::Router, Arc<Fake>) {
    let config: ServerConfig = toml::from_str(toml).unwrap();
    let fake = Fake::with_usage(script, 5);
    (common::app(fake.clone(), config), fake)
}

async fn post(app: &axum::Router, path: &str, body: Value, header: Option<(&str, &str)>) -> (StatusCode, String) {
    let mut req = Request::builder().method("POST").uri(path).header("content-type", "application/json");
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn chat(content: &str) -> Value {
    json!({"model": "tiny", "messages": [{"role": "user", "content": content}]})
}

fn seen_messages(fake: &Fake) -> Vec<(String, String)> {
    match &fake.seen.lock().unwrap().last().unwrap().prompt {
        Prompt::Chat(m) => m.iter().map(|m| (m.role.clone(), m.content.clone())).collect(),
        other => panic!("not a chat prompt: {other:?}"),
    }
}

const LEXICON: &str = "[[guard.lexicons]]\ncategory = \"secret\"\naction = \"block\"\nterms = [\"机密文件\"]\n";

#[tokio::test]
async fn pii_is_hashed_and_masked_before_the_backend() {
    let (app, fake) = make_app("", Script::Tokens(vec!["好的"]));
    let (status, body) = post(&app, "/v1/chat/completions", chat(&format!("身份证{ID}，手机{MOBILE}")), None).await;
    assert_eq!(status, 200, "{body}");
    let seen = seen_messages(&fake);
    let content = &seen[0].1;
    assert!(!content.contains(ID) && !content.contains(MOBILE), "{content}");
    assert!(content.contains("<CN_ID:") && content.contains("138****8000"), "{content}");

    // /generate and /v1/completions prompts too.
    let (status, _) = post(&app, "/generate", json!({"prompt": format!("id {ID}")}), None).await;
    assert_eq!(status, 200);
    assert!(!seen_messages(&fake)[0].1.contains(ID));
    let (status, _) = post(&app, "/v1/completions", json!({"model": "tiny", "prompt": format!("id {ID}")}), None).await;
    assert_eq!(status, 200);
    match &fake.seen.lock().unwrap().last().unwrap().prompt {
        Prompt::Raw(p) => assert!(p.contains("<CN_ID:") && !p.contains(ID), "{p}"),
        other => panic!("{other:?}"),
    }

    // Every decision is counted by entity and action.
    let resp = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let metrics = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("luodi_guard_actions_total") && l.contains("entity=\"CN_ID\"") && l.contains("hash"))
        .unwrap_or_else(|| panic!("no guard metric in:\n{metrics}"));
    assert!(line.split_whitespace().last().unwrap().parse::<f64>().unwrap() >= 3.0, "{line}");
}

#[tokio::test]
async fn pseudonyms_are_restored_in_the_answer_when_enabled() {
    let (app, fake) =
        make_app("[guard.pii]\nrestore_pseudonyms = true\nhash_key = \"0123456789abcdef0123\"\n", Script::Echo);
    for stream in [false, true] {
        let mut body = chat(&format!("我的身份证号是{ID}"));
        body["stream"] = json!(stream);
        let (status, text) = post(&app, "/v1/chat/completions", body, None).await;
        assert_eq!(status, 200, "{text}");
        assert!(!seen_messages(&fake)[0].1.contains(ID));
        // The model echoed the pseudonym; the client gets the value back.
        let answer = if stream {
            stream_content(&text).0
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(answer, format!("我的身份证号是{ID}"), "stream={stream}");
    }
}

#[tokio::test]
async fn a_block_entity_is_a_400_naming_the_type_not_the_value() {
    let (app, fake) = make_app("[guard.pii.entities]\nCN_MOBILE = \"block\"\n", Script::Tokens(vec!["x"]));
    let (status, body) = post(&app, "/v1/chat/completions", chat(&format!("打给{MOBILE}")), None).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "pii_blocked");
    assert_eq!(v["error"]["param"], "messages[0].content");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("CN_MOBILE") && message.contains("rule"), "{message}");
    assert!(!body.contains(MOBILE) && !body.contains("8000"), "{body}");
    assert!(fake.seen.lock().unwrap().is_empty(), "the backend saw a blocked request");

    let (app, _) = make_app(LEXICON, Script::Tokens(vec!["x"]));
    let (status, body) = post(&app, "/generate", json!({"prompt": "把机密文件发给我"}), None).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "content_blocked");
    assert!(v["error"]["message"].as_str().unwrap().contains("secret"), "{body}");
    assert!(!body.contains("机密文件"), "{body}");
}

/// The streamed content and the last finish_reason.
fn stream_content(body: &str) -> (String, String, bool) {
    let datas: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let done = datas.last() == Some(&"[DONE]");
    let mut content = String::new();
    let mut reason = String::new();
    for d in datas.iter().filter(|d| **d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if let Some(r) = v["choices"][0]["finish_reason"].as_str() {
            reason = r.to_string();
        }
    }
    (content, reason, done)
}

const PREFIX: &str = "这是一段很长的开场白，用来确认在拦截之前已经安全输出的文字会照常发送给客户端。然后，";

#[tokio::test]
async fn a_blocked_term_split_across_tokens_ends_the_stream() {
    let (app, fake) =
        make_app(LEXICON, Script::Running(vec![PREFIX, "这是机", "密文件", "的内容，后面还有很多很多文字。"]));
    let mut body = chat("你好");
    body["stream"] = json!(true);
    let (status, text) = post(&app, "/v1/chat/completions", body, None).await;
    assert_eq!(status, 200, "{text}");
    let (content, reason, done) = stream_content(&text);
    assert_eq!(reason, "content_filter", "{text}");
    assert!(done, "{text}");
    assert!(!text.contains("机密") && !text.contains("密文件"), "{text}");
    assert!(content.starts_with("这是一段很长的开场白"), "what passed before the block is sent: {content}");
    assert!(fake.senders.lock().unwrap()[0].is_closed(), "the generation was not cancelled");
}

#[tokio::test]
async fn a_blocked_term_ends_a_whole_answer_too() {
    let (app, fake) =
        make_app(LEXICON, Script::Running(vec![PREFIX, "这是机", "密文件", "的内容，后面还有很多很多文字。"]));
    let (status, text) = post(&app, "/v1/chat/completions", chat("你好"), None).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.contains("机密") && !text.contains("密文件"), "{text}");
    assert!(PREFIX.starts_with(content) || content.starts_with("这是一段"), "{content}");
    assert!(fake.senders.lock().unwrap()[0].is_closed(), "the generation was not cancelled");

    let (app, _) = make_app(LEXICON, Script::Tokens(vec!["答案：", "机密", "文件"]));
    let (status, text) = post(&app, "/generate", json!({"prompt": "hi"}), None).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["finish_reason"], "content_filter");
    assert!(!text.contains("机密"), "{text}");
}

const STYLES: &str = "[styles.professional]\ntone = \"professional\"\nvocabulary = \"formal\"\nlanguage = \"zh\"\n\
                      [styles.pirate]\ntemplate = \"Talk like a pirate.\"\n";

#[tokio::test]
async fn styles_inject_a_system_message() {
    let (app, fake) = make_app(STYLES, Script::Tokens(vec!["好"]));
    let mut body = chat("你好");
    body["style"] = json!("professional");
    let (status, text) = post(&app, "/v1/chat/completions", body, None).await;
    assert_eq!(status, 200, "{text}");
    let seen = seen_messages(&fake);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "system");
    assert!(seen[0].1.contains("professional") && seen[0].1.contains("formal"), "{}", seen[0].1);

    // From the header, appended to an existing system message.
    let body = json!({"model": "tiny", "messages": [{"role": "system", "content": "You help."}, {"role": "user", "content": "hi"}]});
    let (status, _) = post(&app, "/v1/chat/completions", body, Some(("x-luodi-style", "pirate"))).await;
    assert_eq!(status, 200);
    let seen = seen_messages(&fake);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, "You help.\n\nTalk like a pirate.");
}

#[tokio::test]
async fn an_api_key_can_carry_a_default_style() {
    let config = format!("key_styles = {{ \"k-pirate\" = \"pirate\" }}\n{STYLES}");
    let (app, fake) = make_app(&config, Script::Tokens(vec!["好"]));
    let (status, _) = post(&app, "/v1/chat/completions", chat("hi"), Some(("authorization", "Bearer k-pirate"))).await;
    assert_eq!(status, 200);
    assert_eq!(seen_messages(&fake)[0].1, "Talk like a pirate.");
    // The request's own choice wins; other keys get no style.
    let mut body = chat("hi");
    body["style"] = json!("professional");
    let (status, _) = post(&app, "/v1/chat/completions", body, Some(("authorization", "Bearer k-pirate"))).await;
    assert_eq!(status, 200);
    assert!(seen_messages(&fake)[0].1.contains("formal"));
    let (status, _) = post(&app, "/v1/chat/completions", chat("hi"), Some(("authorization", "Bearer other"))).await;
    assert_eq!(status, 200);
    assert_eq!(seen_messages(&fake).len(), 1, "no system message without a style");
    // A key mapped to a style that does not exist is a startup error naming the style.
    let config: ServerConfig = toml::from_str("key_styles = { \"k\" = \"nope\" }\n").unwrap();
    let err = Guarding::from_config(&config).err().unwrap();
    assert!(err.contains("key_styles") && err.contains("nope"), "{err}");
}

#[tokio::test]
async fn unknown_style_is_a_400_listing_the_known_ones() {
    let (app, fake) = make_app(STYLES, Script::Tokens(vec!["好"]));
    let mut body = chat("你好");
    body["style"] = json!("casual");
    let (status, text) = post(&app, "/v1/chat/completions", body, None).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["param"], "style");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("casual") && message.contains("pirate") && message.contains("professional"), "{message}");
    let (status, text) = post(&app, "/v1/chat/completions", chat("hi"), Some(("x-luodi-style", "nope"))).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("x-luodi-style"), "{text}");
    assert!(fake.seen.lock().unwrap().is_empty());
}

#[test]
fn bad_config_names_the_setting() {
    let config: ServerConfig = toml::from_str("[styles.x]\ntemplate = \"{mood}\"\n").unwrap();
    let err = Guarding::from_config(&config).err().unwrap();
    assert!(err.contains("styles.x.template"), "{err}");
    let config: ServerConfig =
        toml::from_str("[[guard.lexicons]]\ncategory = \"c\"\naction = \"block\"\npath = \"/nonexistent/words.txt\"\n")
            .unwrap();
    let err = Guarding::from_config(&config).err().unwrap();
    assert!(err.contains("nonexistent") && err.contains('c'), "{err}");
}

/// Validation comes before the guard: a request with a bad field is refused for that field,
/// so it is never logged or counted as a guard decision (text completions used to guard first).
#[tokio::test]
async fn a_bad_field_is_refused_before_the_guard_looks() {
    let (app, fake) = make_app("[guard.pii.entities]\nCN_MOBILE = \"block\"\n", Script::Tokens(vec!["x"]));
    for (path, body) in [
        ("/v1/completions", json!({"model": "tiny", "prompt": format!("打给{MOBILE}"), "temperature": 9})),
        ("/v1/chat/completions", {
            let mut c = chat(&format!("打给{MOBILE}"));
            c["temperature"] = json!(9);
            c
        }),
        ("/generate", json!({"prompt": format!("打给{MOBILE}"), "temperature": 9})),
    ] {
        let (status, body) = post(&app, path, body, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["param"], "temperature", "{path}: {body}");
        assert_eq!(v["error"]["code"], "invalid_value", "{path}: {body}");
    }
    // The same prompts with valid fields are refused by the guard, naming the prompt field.
    let (status, body) =
        post(&app, "/v1/completions", json!({"model": "tiny", "prompt": format!("打给{MOBILE}")}), None).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["error"]["code"].as_str(), v["error"]["param"].as_str()), (Some("pii_blocked"), Some("prompt")));
    let (_, body) = post(&app, "/generate", json!({"prompt": format!("打给{MOBILE}")}), None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["error"]["code"].as_str(), v["error"]["param"].as_str()), (Some("pii_blocked"), Some("prompt")));
    assert!(fake.seen.lock().unwrap().is_empty());
}
