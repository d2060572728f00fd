use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{CreateEnvironment, Environment, Listing, UpdateEnvironment};

use super::{handlers, App, ProjectPageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_environment,
    list_environments,
    get_environment,
    update_environment,
    delete_environment,
);

#[utoipa::path(post, path = "/v1/environments", tag = "environments",
    request_body = CreateEnvironment,
    responses((status = 201, body = Environment), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_environment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateEnvironment>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let environment = platform.create_environment(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(environment)))
}

#[utoipa::path(get, path = "/v1/environments", tag = "environments", params(ProjectPageParams),
    responses((status = 200, body = Listing<Environment>)))]
async fn list_environments(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(params): Query<ProjectPageParams>,
) -> Result<Json<Listing<Environment>>, ApiError> {
    let (project_id, page) = params.split();
    let listing = platform
        .list_environments(&caller, project_id.as_deref(), &page)
        .await?;
    Ok(Json(listing))
}

#[utoipa::path(get, path = "/v1/environments/{id}", tag = "environments",
    params(("id" = String, Path)),
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody)))]
async fn get_environment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(platform.get_environment(&caller, &id).await?))
}

#[utoipa::path(patch, path = "/v1/environments/{id}", tag = "environments",
    params(("id" = String, Path)), request_body = UpdateEnvironment,
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody)))]
async fn update_environment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(input): Json<UpdateEnvironment>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(
        platform.update_environment(&caller, &id, input).await?,
    ))
}

/// Delete the environment's record and variables (it does not destroy infrastructure).
#[utoipa::path(delete, path = "/v1/environments/{id}", tag = "environments",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_environment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_environment(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
