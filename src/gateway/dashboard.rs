//! The dashboard: one page (`GET /`) with its script and style embedded in the binary (no
//! build step, nothing fetched from elsewhere), drawing the ring as this node sees it, and the
//! routes it reads.
//!
//! - `GET /` → the page; `GET /assets/app.js`, `GET /assets/style.css` → its script and style.
//! - `GET /api/routes` → what is served here (the list `GET /` gave before the page).
//! - `GET /api/ring` → the ring view ([`ring::ring_view`]): members with their status and
//!   angle, and every file once with its owner and live copies.
//! - `GET /api/events` → server-sent events: `ring` with the same view at once, then again
//!   whenever it changes (checked every second).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde_json::{json, Value};

use super::ring::ring_view;
use super::Shared;
use crate::files::Files;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How often the event stream looks at the ring.
const EVENT_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/routes", get(route_list))
        .route("/api/ring", get(ring))
        .route("/api/events", get(events))
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

/// `GET /api/routes`: what is served here.
async fn route_list() -> Json<Value> {
    Json(json!({
        "name": "chord-p2p",
        "version": env!("CARGO_PKG_VERSION"),
        "routes": [
            "GET /",
            "GET|HEAD /files/{name}",
            "PUT|DELETE /files/{name}",
            "GET /api/routes",
            "GET /api/status",
            "GET /api/lookup/{name}",
            "GET /api/ls",
            "GET /api/ring",
            "GET /api/events",
            "GET /metrics",
        ],
    }))
}

async fn ring(State(state): State<Shared>) -> Json<Value> {
    Json(ring_view(&state.files).await)
}

async fn events(State(state): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(ring_changes(state.files)).keep_alive(KeepAlive::default())
}

/// The ring view now, then each time it differs from the last one sent.
fn ring_changes(files: Files) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((files, None::<String>), |(files, last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(EVENT_INTERVAL).await;
            }
            let view = ring_view(&files).await.to_string();
            if last.as_deref() != Some(view.as_str()) {
                let event = Event::default().event("ring").data(view.clone());
                return Some((Ok(event), (files, Some(view))));
            }
        }
    })
}
