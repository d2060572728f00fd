//! The one place where failures become HTTP responses:
//! `{"error": {"code": "...", "message": "..."}}` with a 4xx for every bad input.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use envplane_core::ports::StoreError;
use envplane_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `validation_failed`, `unauthenticated`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`, `method_not_allowed`,
    /// `unsupported_media_type`, `region_passive` (503: this region is passive, the
    /// message names the active one), `unavailable` (503: try again), `internal`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status_and_code = match &error {
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unauthenticated | Error::Unverified(_) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated")
            }
            Error::Malformed(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Passive(_) | Error::Store(StoreError::CheckFailed) => {
                (StatusCode::SERVICE_UNAVAILABLE, "region_passive")
            }
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Store(_)
            | Error::KeyRing(_)
            | Error::Queue(_)
            | Error::Artifact(_)
            | Error::Launch(_)
            | Error::Vcs(_) => {
                // The details are for the operator's log, not for the caller.
                tracing::error!(error = %error, "request failed inside the platform");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the platform could not complete the request; it has been logged",
                );
            }
        };
        Self::new(status_and_code.0, status_and_code.1, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::JsonDataError(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        Self::new(status, code, redact_values(&rejection.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                rejection.body_text(),
            )
        } else {
            Self::bad_request(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(redact_values(&rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(redact_values(&rejection.body_text()))
    }
}

/// serde quotes the offending value in "invalid type: string \"...\", expected ..."; that
/// value may be a secret sent in the wrong field, so only its type is kept.
fn redact_values(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = ["invalid type: ", "invalid value: "]
        .iter()
        .filter_map(|marker| rest.find(marker).map(|at| at + marker.len()))
        .min()
    {
        redacted.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(", expected").unwrap_or(tail.len());
        let kind = tail[..end]
            .split(['`', '"'])
            .next()
            .unwrap_or_default()
            .trim_end();
        redacted.push_str(kind);
        rest = &tail[end..];
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted() {
        let message = "Failed to deserialize: value: invalid type: string \"hunter2\", expected a boolean at line 1 column 20";
        let redacted = redact_values(message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("invalid type: string, expected a boolean"));
        let number = redact_values("invalid type: integer `424242`, expected a string");
        assert_eq!(number, "invalid type: integer, expected a string");
        let untouched = "missing field `name` at line 1 column 2";
        assert_eq!(redact_values(untouched), untouched);
    }

    #[test]
    fn core_errors_map_to_statuses() {
        let status = |error| ApiError::from(error).status;
        assert_eq!(
            status(Error::invalid("x")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(Error::NotFound("project")), StatusCode::NOT_FOUND);
        assert_eq!(status(Error::conflict("x")), StatusCode::CONFLICT);
        assert_eq!(status(Error::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(status(Error::forbidden("x")), StatusCode::FORBIDDEN);
        let internal = ApiError::from(Error::Store(envplane_core::ports::StoreError::Backend(
            "disk I/O error at /secret/path".into(),
        )));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("/secret/path"));
    }
}
