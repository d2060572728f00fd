//! What a deployment holds while it runs: its environment's lock, and the credentials
//! of its sandbox.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::generate_runner_token;
use crate::deployment::Deployment;
use crate::ports::{Kind, WriteOp};
use crate::Result;

use super::{key_of, record, Loaded, Platform, Stored};

/// Held by one deployment of an environment from its first sandbox to its final status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EnvironmentLock {
    pub deployment_id: String,
    pub acquired_at: DateTime<Utc>,
}

impl Stored for EnvironmentLock {
    const KIND: Kind = Kind::EnvironmentLock;
    const NOUN: &'static str = "environment lock";
}

/// The stored half of a runner token: only its hash is the record's unique key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunnerTokenRecord {
    pub deployment_id: String,
    pub environment_id: String,
    pub attempt: u32,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub scope: TokenScope,
    /// A launch token is traded for the phase's job once; then it opens nothing.
    #[serde(default)]
    pub traded: bool,
    /// The runner's last heartbeat (on the runner's own credential).
    #[serde(default)]
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// What a sandbox credential opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// What the launcher hands the sandbox (RunTask, the sandbox's environment): it can
    /// only be traded, once, for the job and the two credentials below.
    #[default]
    Launch,
    /// The runner's own: logs, steps, the plan, the result, heartbeats. Never given to
    /// template code.
    Runner,
    /// What Terraform (and so template code) holds: this environment's state and its
    /// lock, during this phase.
    State,
}

impl Stored for RunnerTokenRecord {
    const KIND: Kind = Kind::RunnerToken;
    const NOUN: &'static str = "runner token";
}

/// How long a sandbox may run one phase before its token stops working.
const RUNNER_TOKEN_LIFETIME_HOURS: i64 = 6;

/// The id of the launch credential of a deployment's `attempt`.
pub(super) fn launch_token_id(deployment_id: &str, attempt: u32) -> String {
    format!("{deployment_id}.{attempt}")
}

/// A new launch credential for the deployment's current attempt, and its insert.
pub(super) fn launch_token(
    org_id: &str,
    deployment: &Deployment,
    now: DateTime<Utc>,
) -> Result<(SecretString, WriteOp)> {
    let (token, hash) = generate_runner_token();
    let value = RunnerTokenRecord {
        deployment_id: deployment.id.clone(),
        environment_id: deployment.environment_id.clone(),
        attempt: deployment.attempt,
        expires_at: now + chrono::Duration::hours(RUNNER_TOKEN_LIFETIME_HOURS),
        scope: TokenScope::Launch,
        traded: false,
        heartbeat_at: None,
    };
    let id = launch_token_id(&deployment.id, deployment.attempt);
    let insert = record(org_id, &id, Some(&deployment.id), Some(hash), &value)?;
    Ok((token, WriteOp::Insert(insert)))
}

/// What the credentials of one attempt say of its sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SignsOfLife {
    /// The runner traded its launch credential: it started.
    pub started: bool,
    pub last_heartbeat: Option<DateTime<Utc>>,
}

impl Platform {
    /// What the credentials of the deployment's `attempt` say of its sandbox, by point
    /// reads (none once the phase ended and its credentials went with it).
    pub(super) async fn signs_of_life(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<SignsOfLife> {
        let [launch_id, runner_id, _] = attempt_credential_ids(deployment_id, attempt);
        let [launch, runner] = self
            .get_records([
                key_of::<RunnerTokenRecord>(org_id, &launch_id),
                key_of::<RunnerTokenRecord>(org_id, &runner_id),
            ])
            .await?;
        let launch = Loaded::<RunnerTokenRecord>::found(launch)?;
        let runner = Loaded::<RunnerTokenRecord>::found(runner)?;
        Ok(SignsOfLife {
            started: launch.is_some_and(|launch| launch.value.traded),
            last_heartbeat: runner.and_then(|runner| runner.value.heartbeat_at),
        })
    }
}

impl Platform {
    /// The credentials of the deployment's `attempt`, by point reads: a listing by
    /// deployment is an index, which may lag and miss one minted a moment ago.
    pub(super) async fn attempt_credentials(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<Vec<Loaded<RunnerTokenRecord>>> {
        let ids = attempt_credential_ids(deployment_id, attempt);
        let found = self
            .get_records(
                ids.each_ref()
                    .map(|id| key_of::<RunnerTokenRecord>(org_id, id)),
            )
            .await?;
        found
            .into_iter()
            .filter_map(|record| Loaded::found(record).transpose())
            .collect()
    }
}

/// The ids of the credentials of the deployment's `attempt`: its launch credential and
/// the runner's and the state's it is traded for.
pub(super) fn attempt_credential_ids(deployment_id: &str, attempt: u32) -> [String; 3] {
    [
        launch_token_id(deployment_id, attempt),
        minted_token_id(deployment_id, attempt, TokenScope::Runner),
        minted_token_id(deployment_id, attempt, TokenScope::State),
    ]
}

/// The id of the credential of `scope` minted when the launch credential of the
/// deployment's `attempt` was traded.
pub(super) fn minted_token_id(deployment_id: &str, attempt: u32, scope: TokenScope) -> String {
    let scope = match scope {
        TokenScope::Launch => "launch",
        TokenScope::Runner => "runner",
        TokenScope::State => "state",
    };
    format!("{deployment_id}.{attempt}.{scope}")
}
