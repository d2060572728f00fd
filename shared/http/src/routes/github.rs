use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use envplane_core::github::MAX_WEBHOOK_BYTES;
use envplane_core::model::{GitHubConnection, PutGitHubConnection};
use envplane_core::service::{WebhookDelivery, WebhookOutcome};
use serde::Deserialize;

use super::{handlers, App};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json};

handlers!(
    put_github_connection,
    get_github_connection,
    delete_github_connection,
);

/// Connect the organization to GitHub (admins): a GitHub App installation or a token,
/// and the webhook secret. Secrets are write-only.
#[utoipa::path(put, path = "/v1/organization/vcs/github", tag = "organizations",
    request_body = PutGitHubConnection,
    responses((status = 200, body = GitHubConnection), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn put_github_connection(
    State(platform): State<App>,
    Auth(caller): Auth,
    Json(input): Json<PutGitHubConnection>,
) -> Result<Json<GitHubConnection>, ApiError> {
    Ok(Json(platform.put_github_connection(&caller, input).await?))
}

/// The organization's GitHub connection (admins), without its secrets.
#[utoipa::path(get, path = "/v1/organization/vcs/github", tag = "organizations",
    responses((status = 200, body = GitHubConnection), (status = 404, body = ErrorBody)))]
async fn get_github_connection(
    State(platform): State<App>,
    Auth(caller): Auth,
) -> Result<Json<GitHubConnection>, ApiError> {
    Ok(Json(platform.get_github_connection(&caller).await?))
}

/// Disconnect the organization from GitHub (admins).
#[utoipa::path(delete, path = "/v1/organization/vcs/github", tag = "organizations",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_github_connection(
    State(platform): State<App>,
    Auth(caller): Auth,
) -> Result<StatusCode, ApiError> {
    platform.delete_github_connection(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?organization=` on a token connection's webhook URL.
#[derive(Debug, Deserialize)]
pub struct WebhookParams {
    organization: Option<String>,
}

/// `POST /webhooks/github`: GitHub's deliveries. Not part of the public API document:
/// GitHub is its only client, and its signature is its authentication.
pub async fn github_webhook(
    State(platform): State<App>,
    Query(params): Query<WebhookParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let app_id = match header("x-github-hook-installation-target-type") {
        Some("integration") => {
            header("x-github-hook-installation-target-id").and_then(|id| id.parse().ok())
        }
        _ => None,
    };
    let delivery = WebhookDelivery {
        event: header("x-github-event").unwrap_or(""),
        delivery_id: header("x-github-delivery").unwrap_or(""),
        signature: header("x-hub-signature-256"),
        app_id,
        organization: params.organization.as_deref(),
        body: &body,
    };
    let answer = match platform.github_webhook(delivery).await? {
        WebhookOutcome::Ignored => serde_json::json!({ "result": "ignored" }),
        WebhookOutcome::Duplicate => serde_json::json!({ "result": "duplicate" }),
        WebhookOutcome::Queued(deployments) => {
            serde_json::json!({ "result": "handled", "deployments": deployments })
        }
    };
    Ok((StatusCode::ACCEPTED, axum::Json(answer)))
}

/// The body limit of the webhook route: GitHub's own cap on payloads.
pub const WEBHOOK_BODY_LIMIT: usize = MAX_WEBHOOK_BYTES;
