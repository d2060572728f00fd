use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{CreateProject, Listing, Project, UpdateProject};

use super::{handlers, App, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_project,
    list_projects,
    get_project,
    update_project,
    delete_project,
);

#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = Project), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_project(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let project = platform.create_project(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

#[utoipa::path(get, path = "/v1/projects", tag = "projects", params(PageParams),
    responses((status = 200, body = Listing<Project>)))]
async fn list_projects(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(page): Query<PageParams>,
) -> Result<Json<Listing<Project>>, ApiError> {
    Ok(Json(platform.list_projects(&caller, &page.into()).await?))
}

#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path)),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
async fn get_project(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(platform.get_project(&caller, &id).await?))
}

#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path)), request_body = UpdateProject,
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
async fn update_project(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(input): Json<UpdateProject>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(platform.update_project(&caller, &id, input).await?))
}

/// Delete an empty project; one with templates or environments answers 409.
#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_project(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_project(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
