//! Connection hardening over real sockets: half-sent request heads and idle connections are
//! closed, the server keeps answering while they are held, a streamed answer outlives both
//! timeouts, past the cap a connection gets 503, and shutdown drains an answer in flight.

mod common;

use common::{Fake, Script};
use luodi_server::backend::{FinishReason, Finished, GenEvent};
use luodi_server::config::ServerConfig;
use luodi_server::listener::ConnectionLimits;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(fake: std::sync::Arc<Fake>, limits: ConnectionLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = common::app(fake, ServerConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(luodi_server::serve_until(listener, app, limits, Duration::from_secs(30), async move {
        let _ = stopped.await;
    }));
    Server { addr, stop: Some(stop), done }
}

fn limits(header: f64, idle: f64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs_f64(header),
        idle_timeout: Duration::from_secs_f64(idle),
        max_connections: max,
    }
}

/// Reads until the server closes the connection; returns what it sent. A server that never
/// closes fails the test (after a bound far above every limit used here) instead of hanging.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut out))
        .await
        .expect("the server never closed the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// One request on a fresh connection, `Connection: close`; the whole response.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    read_to_close(&mut conn).await
}

const CHAT: &str = r#"{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}"#;

#[tokio::test]
async fn half_sent_heads_are_closed_and_the_server_keeps_answering_meanwhile() {
    // Long enough that the requests below finish while the half-open connections are held.
    let server = start(Fake::new(Script::Tokens(vec!["ok"])), limits(3.0, 60.0, 1024)).await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-le").await.unwrap();
        held.push(conn);
    }
    for _ in 0..5 {
        let response = request(server.addr, "POST", "/v1/chat/completions", CHAT).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"content\":\"ok\""), "{response}");
    }
    // Every half-sent head is closed by the server (read_to_end returns), without an answer.
    for mut conn in held {
        let sent = read_to_close(&mut conn).await;
        assert!(!sent.contains("200 OK"), "{sent}");
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_last_answer() {
    let server = start(Fake::new(Script::Tokens(vec!["ok"])), limits(60.0, 0.5, 1024)).await;
    // Never a byte: closed by the idle timer.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    // Keep-alive: one answer, then silence: the answer arrives whole, then the close.
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let sent = read_to_close(&mut conn).await;
    assert!(sent.starts_with("HTTP/1.1 200") && sent.ends_with("{\"status\":\"ok\"}"), "{sent}");
}

#[tokio::test]
async fn a_long_stream_outlives_both_timeouts() {
    let fake = Fake::new(Script::Held);
    let server = start(fake.clone(), limits(0.2, 0.2, 1024)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"model": "tiny", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    fake.wait_for_requests(1).await;
    let tx = fake.sender(0);
    tx.send(Ok(GenEvent::Token { text: "first ".into(), info: None })).unwrap();
    // Several times both limits pass while the answer is running: it must not be cut.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tx.send(Ok(GenEvent::Token { text: "last".into(), info: None })).unwrap();
    tx.send(Ok(GenEvent::Done(Finished { finish_reason: FinishReason::Stop, prompt_tokens: 1, completion_tokens: 2 })))
        .unwrap();
    let sent = read_to_close(&mut conn).await;
    assert!(sent.contains("first ") && sent.contains("last") && sent.contains("data: [DONE]"), "{sent}");
}

#[tokio::test]
async fn past_the_cap_a_connection_gets_503() {
    let server = start(Fake::new(Script::Tokens(vec!["ok"])), limits(60.0, 60.0, 2)).await;
    // Two keep-alive connections, each known to the server (it answered on them).
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = String::new();
        while !got.ends_with("{\"status\":\"ok\"}") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {got}");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        open.push(conn);
    }
    let refused = request(server.addr, "GET", "/health", "").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections") && refused.contains("retry-after: 1"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).expect("the 503 body is JSON of the stated length");
    assert_eq!(v["error"]["code"], "too_many_connections");
    // One closes: there is room again.
    drop(open.pop());
    loop {
        let answer = request(server.addr, "GET", "/health", "").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        // The server may not have seen the close yet; it will (no sleep: the next attempt
        // is the retry a client would make after its 503).
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn shutdown_drains_an_answer_that_is_running() {
    let fake = Fake::new(Script::Held);
    let mut server = start(fake.clone(), limits(10.0, 10.0, 1024)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The request is in the backend when the stop arrives.
    fake.wait_for_requests(1).await;
    server.stop.take().unwrap().send(()).unwrap();
    // New connections are refused once the listener is gone; the running answer goes on.
    let tx = fake.sender(0);
    tx.send(Ok(GenEvent::Token { text: "drained".into(), info: None })).unwrap();
    tx.send(Ok(GenEvent::Done(Finished { finish_reason: FinishReason::Stop, prompt_tokens: 1, completion_tokens: 1 })))
        .unwrap();
    let sent = read_to_close(&mut conn).await;
    assert!(sent.starts_with("HTTP/1.1 200") && sent.contains("\"content\":\"drained\""), "{sent}");
    // With the answer sent, the server stops by itself (within the grace, not because of it).
    server.done.await.unwrap().unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err(), "still accepting after shutdown");
}
