use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{CreateTemplate, Listing, Template, UpdateTemplate};

use super::{handlers, App, ProjectPageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_template,
    list_templates,
    get_template,
    update_template,
    delete_template,
);

#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = CreateTemplate,
    responses((status = 201, body = Template), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_template(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let template = platform.create_template(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(template)))
}

#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(ProjectPageParams),
    responses((status = 200, body = Listing<Template>)))]
async fn list_templates(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(params): Query<ProjectPageParams>,
) -> Result<Json<Listing<Template>>, ApiError> {
    let (project_id, page) = params.split();
    let listing = platform
        .list_templates(&caller, project_id.as_deref(), &page)
        .await?;
    Ok(Json(listing))
}

#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path)),
    responses((status = 200, body = Template), (status = 404, body = ErrorBody)))]
async fn get_template(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    Ok(Json(platform.get_template(&caller, &id).await?))
}

#[utoipa::path(patch, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path)), request_body = UpdateTemplate,
    responses((status = 200, body = Template), (status = 404, body = ErrorBody)))]
async fn update_template(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(input): Json<UpdateTemplate>,
) -> Result<Json<Template>, ApiError> {
    Ok(Json(platform.update_template(&caller, &id, input).await?))
}

/// Delete a template no environment uses; otherwise 409.
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_template(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_template(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
