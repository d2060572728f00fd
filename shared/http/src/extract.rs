//! Extractors whose rejections speak the API's error format, and the caller's identity.

use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use envplane_core::auth::Caller;
use envplane_core::ids::new_id;
use envplane_core::{Error, Platform};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object body (at most 1 MiB, unknown fields refused by the input types).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent with Content-Type: application/json",
            ));
        }
        let body = Bytes::from_request(request, state).await?;
        // serde reads a struct from an array too (`[null, null]` sets its fields in
        // order); every input of this API is an object.
        if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            // Not JSON at all stays a 400, as for any body that cannot be read.
            let axum::Json(_) = axum::Json::<serde_json::Value>::from_bytes(&body)?;
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the body must be a JSON object",
            ));
        }
        let axum::Json(value) = axum::Json::from_bytes(&body)?;
        Ok(Json(value))
    }
}

/// `application/json`, or a `+json` type of it, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(Ok(content_type)) = headers.get(CONTENT_TYPE).map(HeaderValue::to_str) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

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
