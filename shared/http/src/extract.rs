//! Extractors whose rejections speak the API's error format, and the caller's identity.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use envplane_core::auth::Caller;
use envplane_core::ids::new_id;
use envplane_core::{Error, Platform};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::ApiError;

/// A JSON body (at most 1 MiB, unknown fields refused by the input types).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The authenticated caller: `Authorization: Bearer <key>`.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<Platform>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(Error::Unauthenticated)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("unknown");
        Ok(Auth(platform.authenticate(key, request_id).await?))
    }
}

/// Gives every request an id (`x-request-id`), echoed in the response and the audit log.
#[derive(Clone, Copy)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&new_id("req"))
            .ok()
            .map(RequestId::new)
    }
}
