use axum::http::StatusCode;
use envplane_core::model::{CreateOrganization, CreatedOrganization, Organization};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::State;

use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_organization))
        .routes(routes!(get_organization))
}

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
