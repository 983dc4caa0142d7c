//! How a failure reaches an HTTP client: a status code chosen from the failure's kind (the
//! same kinds `--json` errors carry, from [`crate::shapes`]) and the body
//! `{"error": "…", "kind": "…"}`, the shape the CLI prints with `--json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::files::transfer::TransferError;
use crate::files::FilesError;
use crate::node::NodeError;
use crate::shapes::{files_error_kind, node_error_kind};

/// A failed request, ready to answer.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(super) fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(super) fn usage(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "usage", message)
    }

    /// A failure on this machine's side (a scratch file, its disk).
    pub(super) fn local(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "local", message)
    }
}

/// The status code of each kind. The ring's failures are a gateway's upstream failures
/// (502/503/504); what the ring refuses is 403 (only a name's uploader may replace or remove
/// it); a removed file is as gone as a missing one (404; `kind` tells them apart).
fn status_of(kind: &str) -> StatusCode {
    match kind {
        "usage" => StatusCode::BAD_REQUEST,
        "not_found" | "removed" => StatusCode::NOT_FOUND,
        "refused" => StatusCode::FORBIDDEN,
        "busy" => StatusCode::SERVICE_UNAVAILABLE,
        "full" => StatusCode::INSUFFICIENT_STORAGE,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "unreachable" | "transfer" | "protocol" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        let kind = files_error_kind(&e);
        let status = match &e {
            // No room here for the scratch copy of a download.
            FilesError::Transfer(TransferError::NoSpace { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            // A holder refused to say what it holds: the file may exist, try again later.
            FilesError::Unanswered { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => status_of(kind),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let kind = node_error_kind(&e);
        let status = match e {
            // The node is shutting down.
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => status_of(kind),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.message, "kind": self.kind}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy holders make room within seconds (see files::slots).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

/// Any path no route serves.
pub(super) async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
