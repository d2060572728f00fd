//! Extractors whose rejections speak the API's error format, and the caller's identity.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use envplane_core::auth::Caller;
use envplane_core::ids::new_id;
use envplane_core::{Error, Platform};

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
        let ids = parts
            .extensions
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_default();
        let mut caller = platform.authenticate(key, &ids.id).await?;
        caller.client_request_id = ids.client;
        Ok(Auth(caller))
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest `x-request-id` a client may send.
const MAX_CLIENT_REQUEST_ID_LEN: usize = 128;

/// The id the server gave a request, and the client's own `x-request-id` when it sent a
/// valid one: kept beside the server's, never in its place.
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    pub id: String,
    pub client: Option<String>,
}

/// Gives every request a new id, echoed in `x-request-id` on the response and recorded
/// in audit events. A client's `x-request-id` (letters, digits and `-_.:`, at most 128)
/// is kept as its own field; any other value is refused with 400.
pub async fn request_ids(mut request: Request<Body>, next: Next) -> Response {
    let id = new_id("req");
    let client = request.headers_mut().remove(X_REQUEST_ID);
    let response = match client.as_ref().map(client_request_id).transpose() {
        Ok(client) => {
            request.extensions_mut().insert(RequestIds {
                id: id.clone(),
                client,
            });
            next.run(request).await
        }
        Err(error) => error.into_response(),
    };
    with_request_id(response, &id)
}

fn client_request_id(value: &HeaderValue) -> Result<String, ApiError> {
    let valid = |text: &str| {
        !text.is_empty()
            && text.len() <= MAX_CLIENT_REQUEST_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    };
    match value.to_str() {
        Ok(text) if valid(text) => Ok(text.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "x-request-id must be 1 to {MAX_CLIENT_REQUEST_ID_LEN} letters, digits, -, _, . or :"
        ))),
    }
}

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}
