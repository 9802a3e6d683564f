//! luodi's HTTP server: the OpenAI-compatible API, the plain `/generate` contract, health,
//! readiness and Prometheus metrics, in front of the engine.
//!
//! The server knows the engine only through [`backend::Backend`]; it does not depend on it.

pub mod app;
pub mod auth;
pub mod backend;
pub mod builder;
pub mod caching;
pub mod config;
pub mod error;
pub mod guarding;
pub mod listener;
pub mod openapi;
pub mod pipeline;
pub mod recorder;
pub mod recording;
pub mod routes;
pub mod state;
pub mod store_link;
pub mod wire;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| b.install_recorder())
                .expect("installing the metrics recorder")
        })
        .clone()
}

/// Serves until SIGTERM/SIGINT, then stops accepting and lets in-flight requests finish
/// within the configured grace period.
pub async fn serve(router: axum::Router, config: &config::ServerConfig) -> std::io::Result<()> {
    let limits = config.connection_limits().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    serve_until(listener, router, limits, config.shutdown_grace, shutdown_signal()).await
}

/// Serves on `listener` until `stop` completes, then drains for at most `grace`.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: listener::ConnectionLimits,
    grace: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = listener::serve(listener, router, limits, rx);
    tokio::pin!(server);
    tokio::select! {
        result = server.as_mut() => return result,
        _ = stop => {
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            let _ = tx.send(true);
        }
    }
    tokio::select! {
        result = server => result,
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "grace period over; exiting with requests still running");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
