use axum::http::StatusCode;
use envplane_core::model::{CreateOrganization, CreatedOrganization, Organization};

use axum::extract::State;

use super::{handlers, App};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json};

handlers!(create_organization, get_organization,);

/// Create an organization (platform operator only). The response carries its first
/// admin key, shown this once.
#[utoipa::path(post, path = "/v1/organizations", tag = "organizations",
    request_body = CreateOrganization,
    responses((status = 201, body = CreatedOrganization), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_organization(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateOrganization>,
) -> Result<(StatusCode, Json<CreatedOrganization>), ApiError> {
    let created = platform.create_organization(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The caller's organization.
#[utoipa::path(get, path = "/v1/organization", tag = "organizations",
    responses((status = 200, body = Organization), (status = 401, body = ErrorBody)))]
async fn get_organization(
    State(platform): State<App>,
    Auth(caller): Auth,
) -> Result<Json<Organization>, ApiError> {
    Ok(Json(platform.get_organization(&caller).await?))
}
