use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{CreateEnvironment, Environment, Listing, SetTtl, UpdateEnvironment};
use envplane_core::spend::EnvironmentCosts;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{handlers, App, ProjectPageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_environment,
    list_environments,
    get_environment,
    update_environment,
    delete_environment,
    set_ttl,
    get_environment_costs,
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// Admins only (audited): delete even while deployments have not ended (they are
    /// cancelled, running sandboxes stopped) or the environment holds state (its state
    /// versions stay in the store).
    force: Option<bool>,
}

/// Delete the environment and its variables (not what it deployed: run a destroy
/// first). 409 while deployments of it have not ended or it holds Terraform state,
/// unless an admin passes `force=true`.
#[utoipa::path(delete, path = "/v1/environments/{id}", tag = "environments",
    params(("id" = String, Path), DeleteParams),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_environment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    let force = params.force.unwrap_or(false);
    platform.delete_environment(&caller, &id, force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Extend, shorten or remove the environment's time to live: `ttl` from now (`null`
/// removes it), or `expires_at`. When it ends, a destroy is queued.
#[utoipa::path(post, path = "/v1/environments/{id}/ttl", tag = "environments",
    params(("id" = String, Path)), request_body = SetTtl,
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_ttl(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(input): Json<SetTtl>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(platform.set_ttl(&caller, &id, input).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CostsParams {
    /// `YYYY-MM`; this month when left out.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2026-12")]
    month: Option<String>,
}

/// What the environment costs: the estimate of its last successful apply's plan, the
/// bill's spend day by day in `month` (read once a day on AWS from Cost Explorer,
/// grouped by the `envplane:environment` tag), and how much of its monthly budget that
/// used.
#[utoipa::path(get, path = "/v1/environments/{id}/costs", tag = "environments",
    params(("id" = String, Path), CostsParams),
    responses((status = 200, body = EnvironmentCosts), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_environment_costs(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(params): Query<CostsParams>,
) -> Result<Json<EnvironmentCosts>, ApiError> {
    let month = params.month.as_deref();
    Ok(Json(platform.environment_costs(&caller, &id, month).await?))
}
