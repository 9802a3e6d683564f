//! Accepting and holding HTTP/1.1 connections, bounded. `axum::serve` has no header-read
//! timeout, idle timeout or connection cap: a client that sends half a request header could
//! hold a connection (and its memory) forever. Here every connection is watched:
//!
//! - **waiting** (open, no request yet, or the last response sent): closed after
//!   `idle_timeout` without a first byte of the next request;
//! - **receiving** (bytes of a request head arrived, the head is not complete): closed
//!   `header_read_timeout` after its first byte;
//! - **busy** (a request is being answered, its response body included, however long a
//!   stream runs): never closed by a timer here; the request deadline bounds generation.
//!
//! Past `max_connections` open connections a new one gets a 503 with `Retry-After` and is
//! closed, so a flood of idle sockets cannot starve real clients of file descriptors.

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use http_body_util::BodyExt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

/// Connection limits (`[server]` settings; see `ServerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Waiting(Instant),
    Receiving(Instant),
    Busy(usize),
}

/// One connection's phase, shared by its socket, its service and its watchdog.
struct Watch {
    phase: Mutex<Phase>,
    /// Set while the phase is `Waiting`, so reads check it without the lock.
    waiting: AtomicBool,
    changed: Notify,
}

impl Watch {
    fn new() -> Arc<Watch> {
        Arc::new(Watch {
            phase: Mutex::new(Phase::Waiting(Instant::now())),
            waiting: AtomicBool::new(true),
            changed: Notify::new(),
        })
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = f(*phase);
        self.waiting.store(matches!(*phase, Phase::Waiting(_)), Ordering::SeqCst);
        drop(phase);
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            self.set(|p| match p {
                Phase::Waiting(_) => Phase::Receiving(Instant::now()),
                other => other,
            });
        }
    }

    fn request_started(&self) {
        self.set(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    fn response_finished(&self) {
        self.set(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Waiting(Instant::now()),
        });
    }

    /// Returns when the connection has outlived its phase's limit.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            let changed = self.changed.notified();
            let deadline = match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
                Phase::Waiting(since) => Some(since + limits.idle_timeout),
                Phase::Receiving(since) => Some(since + limits.header_read_timeout),
                Phase::Busy(_) => None,
            };
            match deadline {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The socket, telling the watch when request bytes arrive.
struct WatchedStream {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Ends the busy phase when dropped: hyper drops the response body once it is sent (or the
/// client is gone).
struct BusyGuard(Arc<Watch>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 131\r\n\r\n{\"error\":{\"message\":\"too many open connections; retry shortly\",\"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting, lets
/// every connection finish its requests, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let (closed_tx, mut closed) = watch::channel(0usize);
    let closed_tx = Arc::new(closed_tx);
    loop {
        let (socket, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping(&mut shutdown) => break,
        };
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            metrics::counter!("luodi_connections_rejected_total").increment(1);
            tokio::spawn(async move {
                let mut socket = socket;
                let _ = socket.write_all(TOO_MANY).await;
                let _ = socket.shutdown().await;
            });
            continue;
        }
        let _ = socket.set_nodelay(true);
        open.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("luodi_connections_open").increment(1.0);
        let (router, shutdown, open, closed_tx) = (router.clone(), shutdown.clone(), open.clone(), closed_tx.clone());
        tokio::spawn(async move {
            serve_connection(socket, router, limits, shutdown).await;
            open.fetch_sub(1, Ordering::SeqCst);
            metrics::gauge!("luodi_connections_open").decrement(1.0);
            closed_tx.send_modify(|n| *n += 1);
        });
    }
    // No new connections from here (the port is free), and the open ones drain: they close
    // once their requests are answered.
    drop(listener);
    let _ = closed.wait_for(|_| open.load(Ordering::SeqCst) == 0).await.map(|_| ());
    Ok(())
}

/// Completes when shutdown begins (or its sender is gone). The guard `wait_for` returns is
/// dropped here: it must not live in a `Send` future.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection(
    socket: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let watch = Watch::new();
    let io = hyper_util::rt::TokioIo::new(WatchedStream { inner: socket, watch: watch.clone() });
    let service_watch = watch.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (router, watch) = (router.clone(), service_watch.clone());
        async move {
            watch.request_started();
            let guard = BusyGuard(watch);
            let response = router.oneshot(req.map(Body::new)).await.unwrap_or_else(|never| match never {});
            // The guard lives as long as the body: a stream keeps the connection busy.
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &guard;
                    frame
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // Our own watch times the head (from its first byte) and idle keep-alive.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = watch.expired(limits) => {
            metrics::counter!("luodi_connections_timed_out_total").increment(1);
            return; // dropping the connection closes the socket
        }
        _ = stopping(&mut shutdown) => {}
    }
    // Shutting down: finish what is in flight, then close (idle connections close at once).
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
