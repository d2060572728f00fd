use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::deployment::{CreateDeployment, Deployment, DeploymentPlan, LogPage};
use envplane_core::model::Listing;
use envplane_core::service::StateVersion;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{handlers, App, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_deployment,
    list_deployments,
    get_deployment,
    deployment_logs,
    deployment_plan,
    approve_deployment,
    reject_deployment,
    cancel_deployment,
    list_state_versions,
    get_state_version,
    unlock_state,
);

/// Queue a plan, apply or destroy. It runs when the environment is free, one at a time,
/// in order.
#[utoipa::path(post, path = "/v1/environments/{id}/deployments", tag = "deployments",
    params(("id" = String, Path)), request_body = CreateDeployment,
    responses((status = 202, body = Deployment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_deployment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(input): Json<CreateDeployment>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let deployment = platform.create_deployment(&caller, &id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

/// The environment's deployments, newest first.
#[utoipa::path(get, path = "/v1/environments/{id}/deployments", tag = "deployments",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = Listing<Deployment>), (status = 404, body = ErrorBody)))]
async fn list_deployments(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<Json<Listing<Deployment>>, ApiError> {
    Ok(Json(
        platform
            .list_deployments(&caller, &id, &page.into())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
async fn get_deployment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(platform.get_deployment(&caller, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogParams {
    /// Only chunks after this sequence number (the previous page's `last_seq`).
    after: Option<u64>,
    /// Chunks per page, 1 to 500 (default 50).
    limit: Option<usize>,
}

/// The deployment's log, in order, masked by the sandbox. Poll with `after`.
#[utoipa::path(get, path = "/v1/deployments/{id}/logs", tag = "deployments",
    params(("id" = String, Path), LogParams),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody)))]
async fn deployment_logs(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Json<LogPage>, ApiError> {
    let logs = platform
        .deployment_logs(&caller, &id, params.after, params.limit)
        .await?;
    Ok(Json(logs))
}

/// The deployment's latest plan: Terraform's text and JSON, sensitive values removed
/// and masked. 404 until a sandbox has planned.
#[utoipa::path(get, path = "/v1/deployments/{id}/plan", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 200, body = DeploymentPlan), (status = 404, body = ErrorBody)))]
async fn deployment_plan(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<DeploymentPlan>, ApiError> {
    Ok(Json(platform.deployment_plan(&caller, &id).await?))
}

/// Approve the saved plan; a new sandbox applies exactly it. 409 unless waiting.
#[utoipa::path(post, path = "/v1/deployments/{id}/approve", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 409, body = ErrorBody)))]
async fn approve_deployment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(platform.approve_deployment(&caller, &id).await?))
}

/// Reject the saved plan. 409 unless waiting for approval.
#[utoipa::path(post, path = "/v1/deployments/{id}/reject", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 409, body = ErrorBody)))]
async fn reject_deployment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(platform.reject_deployment(&caller, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CancelParams {
    /// Admins only: end a running deployment at once, without waiting for its sandbox
    /// (audited). For a deployment that cannot end by itself.
    force: Option<bool>,
}

/// Cancel: a queued or waiting deployment ends at once; a running sandbox is stopped
/// (Terraform gets SIGINT first) and the deployment ends `cancelled` when it has.
#[utoipa::path(post, path = "/v1/deployments/{id}/cancel", tag = "deployments",
    params(("id" = String, Path), CancelParams),
    responses((status = 200, body = Deployment), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_deployment(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(params): Query<CancelParams>,
) -> Result<Json<Deployment>, ApiError> {
    let force = params.force.unwrap_or(false);
    Ok(Json(platform.cancel_deployment(&caller, &id, force).await?))
}

/// Release Terraform's lock on the environment's state, whoever holds it (admins only,
/// audited): for a lock a lost sandbox left behind. 409 when it is not locked.
#[utoipa::path(post, path = "/v1/environments/{id}/state/unlock", tag = "state",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn unlock_state(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.force_unlock_state(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The environment's saved Terraform states, newest first.
#[utoipa::path(get, path = "/v1/environments/{id}/state-versions", tag = "state",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = Listing<StateVersion>), (status = 404, body = ErrorBody)))]
async fn list_state_versions(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<Json<Listing<StateVersion>>, ApiError> {
    Ok(Json(
        platform
            .list_state_versions(&caller, &id, &page.into())
            .await?,
    ))
}

/// One saved state (admins only), with sensitive outputs null and sensitive variable
/// values masked.
#[utoipa::path(get, path = "/v1/environments/{id}/state-versions/{version}", tag = "state",
    params(("id" = String, Path), ("version" = u64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_state_version(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path((id, version)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        platform.get_state_version(&caller, &id, version).await?,
    ))
}
