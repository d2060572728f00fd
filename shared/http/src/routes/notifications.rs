use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::model::{
    CreateNotificationTarget, CreatedNotificationTarget, Listing, NotificationTarget,
};

use super::{handlers, App, ProjectPageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    create_notification_target,
    list_notification_targets,
    get_notification_target,
    delete_notification_target,
);

/// Send a project's deployment events to an HTTPS webhook (signed) or a Slack incoming
/// webhook. Admins of the project. A webhook target's signing secret is answered once.
#[utoipa::path(post, path = "/v1/notification-targets", tag = "notifications",
    request_body = CreateNotificationTarget,
    responses((status = 201, body = CreatedNotificationTarget), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_notification_target(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<CreateNotificationTarget>,
) -> Result<(StatusCode, Json<CreatedNotificationTarget>), ApiError> {
    let created = platform.create_notification_target(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/notification-targets", tag = "notifications", params(ProjectPageParams),
    responses((status = 200, body = Listing<NotificationTarget>)))]
async fn list_notification_targets(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(params): Query<ProjectPageParams>,
) -> Result<Json<Listing<NotificationTarget>>, ApiError> {
    let (project_id, page) = params.split();
    let listing = platform
        .list_notification_targets(&caller, project_id.as_deref(), &page)
        .await?;
    Ok(Json(listing))
}

#[utoipa::path(get, path = "/v1/notification-targets/{id}", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 200, body = NotificationTarget), (status = 404, body = ErrorBody)))]
async fn get_notification_target(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<NotificationTarget>, ApiError> {
    Ok(Json(platform.get_notification_target(&caller, &id).await?))
}

/// Stop sending to the target (admins of its project); deliveries on their way are
/// dropped.
#[utoipa::path(delete, path = "/v1/notification-targets/{id}", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_notification_target(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_notification_target(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
