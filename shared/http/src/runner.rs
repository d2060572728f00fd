//! The sandbox-facing API: the trade of the launch credential for the job, logs, steps,
//! the saved plan, the result, and the Terraform HTTP state backend. Each route takes
//! the one kind of sandbox credential meant for it (bearer, or as the basic-auth
//! password Terraform's http backend sends): the launch credential only the trade, the
//! runner's the runner's calls, the state credential (Terraform's) only the state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use envplane_core::deployment::{Deployment, LogChunkInput, PhaseReport, Session, StepReport};
use envplane_core::service::{Runner, TokenScope};
use envplane_core::{Error, Platform};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Plans and states can be far larger than API requests.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

type App = Arc<Platform>;

/// The runner API and the Terraform state backend, added to `router`.
pub fn routes(router: Router<App>) -> Router<App> {
    router
        .route("/v1/runner/session", post(session))
        .route("/v1/runner/logs", post(logs))
        .route("/v1/runner/steps", post(step))
        .route("/v1/runner/finish", post(finish))
        .route(
            "/v1/runner/plan",
            get(get_plan)
                .put(put_plan)
                .layer(DefaultBodyLimit::max(MAX_ARTIFACT_BYTES)),
        )
        .route(
            "/v1/state/{environment_id}",
            get(read_state)
                .post(write_state)
                .layer(DefaultBodyLimit::max(MAX_ARTIFACT_BYTES)),
        )
        .route(
            "/v1/state/{environment_id}/lock",
            post(lock_state).delete(unlock_state),
        )
}

/// The runner of one deployment phase, by its own credential.
pub struct RunnerAuth(Runner);
/// A sandbox's launch credential, good for the trade alone.
pub struct LaunchAuth(Runner);
/// Terraform's state credential (or the runner's).
pub struct StateAuth(Runner);

impl FromRequestParts<App> for RunnerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, platform: &App) -> Result<Self, ApiError> {
        sandbox(parts, platform, &[TokenScope::Runner])
            .await
            .map(RunnerAuth)
    }
}

impl FromRequestParts<App> for LaunchAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, platform: &App) -> Result<Self, ApiError> {
        sandbox(parts, platform, &[TokenScope::Launch])
            .await
            .map(LaunchAuth)
    }
}

impl FromRequestParts<App> for StateAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, platform: &App) -> Result<Self, ApiError> {
        let scopes = [TokenScope::State, TokenScope::Runner];
        sandbox(parts, platform, &scopes).await.map(StateAuth)
    }
}

async fn sandbox(parts: &Parts, platform: &App, scopes: &[TokenScope]) -> Result<Runner, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(Error::Unauthenticated)?;
    let token = if let Some(token) = header.strip_prefix("Bearer ") {
        token.trim().to_string()
    } else if let Some(encoded) = header.strip_prefix("Basic ") {
        basic_auth_password(encoded.trim()).ok_or(Error::Unauthenticated)?
    } else {
        return Err(Error::Unauthenticated.into());
    };
    Ok(platform.authenticate_runner(&token, scopes).await?)
}

fn basic_auth_password(encoded: &str) -> Option<String> {
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    decoded
        .split_once(':')
        .map(|(_, password)| password.to_string())
}

async fn session(
    State(platform): State<App>,
    LaunchAuth(runner): LaunchAuth,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(platform.start_session(&runner).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBatch {
    chunks: Vec<LogChunkInput>,
}

async fn logs(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
    Json(batch): Json<LogBatch>,
) -> Result<StatusCode, ApiError> {
    platform.append_logs(&runner, batch.chunks).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn step(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
    Json(report): Json<StepReport>,
) -> Result<StatusCode, ApiError> {
    platform.report_step(&runner, report).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn finish(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
    Json(report): Json<PhaseReport>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(platform.finish_phase(&runner, report).await?))
}

async fn put_plan(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
    plan: Bytes,
) -> Result<StatusCode, ApiError> {
    platform.put_plan(&runner, plan.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_plan(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
) -> Result<Vec<u8>, ApiError> {
    Ok(platform.get_plan(&runner).await?)
}

#[derive(Deserialize)]
struct StateParams {
    /// The lock id Terraform holds while saving.
    #[serde(rename = "ID")]
    lock_id: Option<String>,
}

// Terraform's http backend: GET the state, POST a new one; POST the lock and DELETE it
// at `/lock` (the runner sets `TF_HTTP_LOCK_METHOD`/`TF_HTTP_UNLOCK_METHOD`): the
// backend's default LOCK and UNLOCK methods do not pass CloudFront.

async fn read_state(
    State(platform): State<App>,
    StateAuth(runner): StateAuth,
    Path(environment_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match platform.read_state(&runner, &environment_id).await? {
        Some(state) => state.into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn write_state(
    State(platform): State<App>,
    StateAuth(runner): StateAuth,
    Path(environment_id): Path<String>,
    Query(params): Query<StateParams>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    platform
        .write_state(
            &runner,
            &environment_id,
            params.lock_id.as_deref(),
            body.to_vec(),
        )
        .await?;
    Ok(StatusCode::OK)
}

async fn lock_state(
    State(platform): State<App>,
    StateAuth(runner): StateAuth,
    Path(environment_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let info = lock_info(&body)?;
    Ok(
        match platform.lock_state(&runner, &environment_id, info).await? {
            Ok(()) => StatusCode::OK.into_response(),
            Err(held) => (StatusCode::LOCKED, axum::Json(held.0)).into_response(),
        },
    )
}

async fn unlock_state(
    State(platform): State<App>,
    StateAuth(runner): StateAuth,
    Path(environment_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    platform
        .unlock_state(&runner, &environment_id, lock_info(&body)?)
        .await?;
    Ok(StatusCode::OK)
}

fn lock_info(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("the lock info is not JSON"))
}
