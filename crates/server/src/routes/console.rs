//! `GET /console`: the review console, one HTML page embedded in the binary (no CDN, no build
//! step). It talks to `/v1/interactions` and `/v1/feedback` with the key the reviewer enters,
//! so it needs no session of its own.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("../console/index.html");

pub async fn console() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Only our own inline script and same-origin requests.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
