//! The sandbox-facing API: the trade of the launch credential for the job, logs, steps,
//! the saved plan and its readable view, the result, and the Terraform HTTP state
//! backend. Each route takes the one kind of sandbox credential meant for it (bearer, or
//! as the basic-auth password Terraform's http backend sends): the launch credential
//! only the trade, the runner's the runner's calls, the state credential (Terraform's)
//! only the state.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use envplane_core::deployment::{Deployment, LogChunkInput, PhaseReport, Session, StepReport};
use envplane_core::service::{Runner, TokenScope};
use envplane_core::{Error, Platform};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

type App = Arc<Platform>;

/// The runner API and the Terraform state backend, added to `router`.
pub fn routes(router: Router<App>) -> Router<App> {
    router
        .route("/v1/runner/session", post(session))
        .route("/v1/runner/logs", post(logs))
        .route("/v1/runner/steps", post(step))
        .route("/v1/runner/heartbeat", post(heartbeat))
        .route("/v1/runner/finish", post(finish))
        .route("/v1/runner/plan", get(get_plan).put(put_plan))
        .route("/v1/runner/plan-view", put(put_plan_view))
        .route(
            "/v1/state/{environment_id}",
            get(read_state).post(write_state),
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

async fn heartbeat(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
) -> Result<StatusCode, ApiError> {
    platform.heartbeat(&runner).await?;
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
    body: Body,
) -> Result<StatusCode, ApiError> {
    let limit = platform.quotas().plan_bytes;
    let (plan, _slot) = read_upload(&runner, Upload::Plan, limit, body).await?;
    platform.put_plan(&runner, plan).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The plan as people read it: text and JSON, for `GET /v1/deployments/{id}/plan`.
async fn put_plan_view(
    State(platform): State<App>,
    RunnerAuth(runner): RunnerAuth,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let limit = platform.quotas().plan_bytes;
    let (view, _slot) = read_upload(&runner, Upload::PlanView, limit, body).await?;
    platform.put_plan_view(&runner, view).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a sandbox uploads whole: a plan, its view or a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Upload {
    Plan,
    PlanView,
    State,
}

impl Upload {
    fn noun(self) -> &'static str {
        match self {
            Upload::Plan => "plan",
            Upload::PlanView => "plan view",
            Upload::State => "state",
        }
    }
}

/// The uploads being read, by deployment phase.
static UPLOADS: LazyLock<Mutex<HashSet<(String, u32, Upload)>>> = LazyLock::new(Default::default);

/// A deployment phase's one upload of a kind in progress; dropped, it makes room for
/// the next.
struct UploadSlot((String, u32, Upload));

impl Drop for UploadSlot {
    fn drop(&mut self) {
        UPLOADS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.0);
    }
}

/// Reads an upload no further than `limit` (its quota: 413 beyond), one at a time per
/// deployment phase and kind (409 for a second at once). So what sandboxes can make the
/// server hold is at most their number times the quotas, however many requests they
/// send; the body is never read whole before its size is known to be allowed.
async fn read_upload(
    runner: &Runner,
    upload: Upload,
    limit: usize,
    body: Body,
) -> Result<(Vec<u8>, UploadSlot), ApiError> {
    let key = (runner.deployment_id.clone(), runner.attempt, upload);
    let slot = {
        let mut uploads = UPLOADS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !uploads.insert(key.clone()) {
            return Err(Error::conflict(format!(
                "another upload of this deployment's {} is in progress",
                upload.noun()
            ))
            .into());
        }
        UploadSlot(key)
    };
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|error| {
        let over_quota = error
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if over_quota {
            Error::TooLarge(format!(
                "the {} is over the quota of {limit} bytes",
                upload.noun()
            ))
            .into()
        } else {
            ApiError::bad_request(format!("the {} could not be read whole", upload.noun()))
        }
    })?;
    Ok((Vec::from(bytes), slot))
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
    body: Body,
) -> Result<StatusCode, ApiError> {
    let limit = platform.quotas().state_bytes;
    let (state, _slot) = read_upload(&runner, Upload::State, limit, body).await?;
    platform
        .write_state(&runner, &environment_id, params.lock_id.as_deref(), state)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn runner(deployment_id: &str) -> Runner {
        Runner {
            org_id: "org_1".into(),
            deployment_id: deployment_id.into(),
            environment_id: "env_1".into(),
            attempt: 1,
            scope: TokenScope::State,
        }
    }

    /// A body whose chunks the test sends, ending when the sender is dropped.
    fn streamed() -> (mpsc::Sender<Bytes>, Body) {
        let (sender, receiver) = mpsc::channel::<Bytes>(4);
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        (sender, Body::from_stream(stream))
    }

    #[tokio::test]
    async fn one_upload_per_phase_and_kind_at_a_time() {
        let (sender, body) = streamed();
        let first =
            tokio::spawn(
                async move { read_upload(&runner("dep_a"), Upload::State, 1024, body).await },
            );
        sender
            .send(Bytes::from_static(b"{\"serial\""))
            .await
            .unwrap();
        // Wait until the first upload holds its slot.
        while !UPLOADS.lock().unwrap().iter().any(|(id, ..)| id == "dep_a") {
            tokio::task::yield_now().await;
        }
        let second = read_upload(&runner("dep_a"), Upload::State, 1024, Body::from("{}")).await;
        assert_eq!(
            second.err().unwrap().into_response().status(),
            StatusCode::CONFLICT
        );
        // Another kind, or another deployment, is not held up.
        let plan = read_upload(&runner("dep_a"), Upload::Plan, 1024, Body::from("p")).await;
        assert_eq!(plan.unwrap().0, b"p");
        let other = read_upload(&runner("dep_b"), Upload::State, 1024, Body::from("{}")).await;
        assert_eq!(other.unwrap().0, b"{}");

        sender.send(Bytes::from_static(b":1}")).await.unwrap();
        drop(sender);
        let (state, slot) = first.await.unwrap().unwrap();
        assert_eq!(state, b"{\"serial\":1}");
        drop(slot);
        let again = read_upload(&runner("dep_a"), Upload::State, 1024, Body::from("{}")).await;
        assert!(again.is_ok());
    }

    #[tokio::test]
    async fn an_upload_over_its_quota_is_refused_as_soon_as_it_is() {
        let (sender, body) = streamed();
        let upload =
            tokio::spawn(async move { read_upload(&runner("dep_c"), Upload::Plan, 8, body).await });
        sender.send(Bytes::from_static(b"123456789")).await.unwrap();
        // The sender stays open: the refusal does not wait for the rest of the body.
        let refused = upload.await.unwrap().err().unwrap();
        assert_eq!(
            refused.into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        drop(sender);
        let cut = {
            let (sender, body) = streamed();
            sender.send(Bytes::from_static(b"12")).await.unwrap();
            drop(sender);
            read_upload(&runner("dep_c"), Upload::Plan, 8, body).await
        };
        assert_eq!(cut.unwrap().0, b"12");
    }
}
