use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{ApiKey, CreateApiKey, CreatedApiKey, Listing};

use super::{handlers, App, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(create_api_key, list_api_keys, revoke_api_key,);

/// Create an API key. The secret is in the response once; only its hash is stored.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody)))]
async fn create_api_key(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let created = platform.create_api_key(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The API keys the caller administers (revoked ones included).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(PageParams),
    responses((status = 200, body = Listing<ApiKey>)))]
async fn list_api_keys(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(page): Query<PageParams>,
) -> Result<Json<Listing<ApiKey>>, ApiError> {
    Ok(Json(platform.list_api_keys(&caller, &page.into()).await?))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(platform.revoke_api_key(&caller, &id).await?))
}
