//! The JSON API: `status`, `lookup` and `ls` as the command line prints them with `--json`
//! (the shapes are [`crate::shapes`], shared with the CLI), for scripts and the dashboard.
//!
//! - `GET /api/status` → `status --json` of this node.
//! - `GET /api/lookup/{name}` → `lookup --json`: `{"name", "key", "owner", "hops"}`.
//! - `GET /api/ls` → `ls --json` of this node: `{"files": [{"name", "key", "size", "hash",
//!   "role"}]}`.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::error::ApiError;
use super::Shared;
use crate::chord::Id;
use crate::files::names::check_name;
use crate::shapes::{files_json, lookup_json, status_json};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/lookup/{*name}", get(lookup))
        .route("/api/ls", get(ls))
}

async fn status(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let report = state.files.access().node.status().await?;
    Ok(Json(status_json(&report)))
}

async fn lookup(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name).map_err(|e| ApiError::usage(e.to_string()))?;
    let started = Instant::now();
    let found = state.files.access().lookup(Id::hash(name.as_bytes())).await;
    state.metrics.looked_up(
        found.as_ref().ok().map(|f| f.hops),
        started.elapsed().as_secs_f64(),
    );
    Ok(Json(lookup_json(&name, &found?)))
}

async fn ls(State(state): State<Shared>) -> Json<Value> {
    Json(files_json(&state.files.list()))
}
