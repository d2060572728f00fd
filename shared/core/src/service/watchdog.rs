//! The watchdog: ends what cannot end by itself. It runs on a schedule (a loop in
//! `envplane serve`, the reaper on AWS); each decision is a conditional write on the
//! deployment, so two watchdogs at once end a deployment once.

use chrono::{DateTime, Duration, Utc};

use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::Environment;
use crate::validate::DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES;
use crate::{Error, Result};

use super::credentials::{EnvironmentLock, SignsOfLife};
use super::{Loaded, Platform};

/// How long a queued deployment that could start waits before its queue message counts
/// as lost: a delivered message dispatches it within seconds.
const LOST_MESSAGE_AFTER: Duration = Duration::minutes(5);
/// How long an attempt may stay committed but not launched: the launch follows the
/// commit within seconds, unless the dispatcher died in between.
const UNLAUNCHED_LIMIT: Duration = Duration::minutes(2);
/// How long a sandbox may go without a sign of life (its launch, then its runner's
/// heartbeats, every 20 s) before the watchdog gives up on it; room for a slow image
/// pull on Fargate.
const SILENCE_LIMIT: Duration = Duration::minutes(5);

/// What one watchdog round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// Running deployments failed for running past their timeout.
    pub timed_out: usize,
    /// Running deployments whose runner went silent: failed.
    pub silent: usize,
    /// Attempts that were never launched, or whose sandbox never started: sent back to
    /// the queue for another attempt (or failed after the last).
    pub restarted: usize,
    /// Queued deployments whose message was lost, sent again.
    pub resent: usize,
    /// Queued deployments whose message was lost after it was sent again: failed.
    pub lost: usize,
    /// Queued deployments sent to this region's queue after it became active.
    pub adopted: usize,
    /// Nothing ran: this region is passive.
    pub passive: bool,
}

impl Platform {
    /// One round of the watchdog: running deployments (timeouts, silent or never
    /// started sandboxes), then lost queue messages.
    pub async fn run_watchdog(&self) -> Result<Watchdog> {
        if !self.acting().await? {
            return Ok(Watchdog {
                passive: true,
                ..Watchdog::default()
            });
        }
        let adopted = self.adopt_queued().await?;
        let mut round = self.check_running_deployments().await?;
        (round.resent, round.lost) = self.recover_lost_messages().await?;
        round.adopted = adopted;
        Ok(round)
    }

    /// A queued deployment that could start (a sandbox slot is free, its environment is
    /// free or held for it, it is the environment's oldest) but has waited
    /// [`LOST_MESSAGE_AFTER`] lost its queue message: it is sent again, once; if that
    /// one is lost too (it never reached a dispatcher), the deployment fails with the
    /// reason. Only as many as there are free slots, oldest first: the others could not
    /// start anyway. Returns (resent, failed).
    async fn recover_lost_messages(&self) -> Result<(usize, usize)> {
        let running = self.slots_taken().await?;
        let mut free = self
            .settings
            .max_parallel_deployments
            .saturating_sub(running);
        let now = self.now();
        let (mut resent, mut lost) = (0, 0);
        for mut loaded in self.indexed::<Deployment>(DeploymentStatus::Queued).await? {
            if free == 0 {
                break;
            }
            let deployment = &loaded.value;
            let waiting_since = deployment.resent_at.unwrap_or(deployment.updated_at);
            if now - waiting_since < LOST_MESSAGE_AFTER || !self.could_start(&loaded).await? {
                continue;
            }
            free -= 1;
            let org_id = loaded.stored.org_id.clone();
            if deployment.resent_at.is_none() {
                loaded.value.resent_at = Some(now);
                match self.store.commit(vec![loaded.replace()?]).await {
                    Ok(()) => {
                        tracing::warn!(deployment_id = %loaded.value.id, "queue message lost; sent again");
                        self.announce(&org_id, &loaded.value).await;
                        resent += 1;
                    }
                    // Dispatched or changed meanwhile: nothing was lost.
                    Err(crate::ports::StoreError::Conflict) => {}
                    Err(error) => return Err(error.into()),
                }
            } else {
                let reason = "it was never dispatched: its queue message was lost, and so was the one sent again".to_string();
                match self
                    .conclude(loaded, DeploymentStatus::Failed, Some(reason), None)
                    .await
                {
                    Ok(_) => lost += 1,
                    Err(Error::Conflict(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok((resent, lost))
    }

    /// Whether a dispatch of this queued deployment would start it now.
    async fn could_start(&self, loaded: &Loaded<Deployment>) -> Result<bool> {
        let (org_id, deployment) = (&loaded.stored.org_id, &loaded.value);
        let lock = self
            .find::<EnvironmentLock>(org_id, &deployment.environment_id)
            .await?;
        Ok(match lock {
            Some(lock) => lock.value.deployment_id == deployment.id,
            // The listing may not show it yet; it is the oldest unless an older shows.
            None => self
                .older_queued(org_id, &deployment.environment_id, &deployment.id)
                .await?
                .is_none(),
        })
    }

    /// Ends or restarts every running deployment the [`verdict`] finds wrong: past its
    /// environment's timeout or silent, it fails (its sandbox told to stop, its locks
    /// released, the next deployment started); never launched or never started, it is
    /// sent back to the queue for another attempt.
    async fn check_running_deployments(&self) -> Result<Watchdog> {
        let now = self.now();
        let mut round = Watchdog::default();
        for loaded in self
            .indexed::<Deployment>(DeploymentStatus::Running)
            .await?
        {
            let (org_id, deployment) = (&loaded.stored.org_id, &loaded.value);
            // An environment deleted under its deployment: the default applies.
            let minutes = self
                .find::<Environment>(org_id, &deployment.environment_id)
                .await?
                .map_or(DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES, |environment| {
                    environment.value.deployment_timeout_minutes
                });
            let signs = self
                .signs_of_life(org_id, &deployment.id, deployment.attempt)
                .await?;
            let (id, attempt, failed) =
                (&deployment.id, deployment.attempt, DeploymentStatus::Failed);
            match verdict(deployment, minutes, signs, now) {
                Verdict::Healthy => {}
                Verdict::TimedOut => {
                    let reason = format!("timed out after {}", duration_words(minutes));
                    if self
                        .conclude_and_stop(org_id, id, attempt, failed, reason)
                        .await?
                        .is_some()
                    {
                        tracing::warn!(deployment_id = %id, minutes, "deployment timed out");
                        round.timed_out += 1;
                    }
                }
                Verdict::Silent(reason) => {
                    if self
                        .conclude_and_stop(org_id, id, attempt, failed, reason)
                        .await?
                        .is_some()
                    {
                        tracing::warn!(deployment_id = %id, "the runner went silent");
                        round.silent += 1;
                    }
                }
                Verdict::NotStarted(reason) => {
                    self.start_failed(org_id, id, attempt, reason).await?;
                    round.restarted += 1;
                }
            }
        }
        Ok(round)
    }
}

/// What the watchdog makes of a running deployment.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Healthy,
    TimedOut,
    /// Its sandbox started, then went silent: it fails with the reason.
    Silent(String),
    /// Its attempt was never launched, or its sandbox never started: another attempt.
    NotStarted(String),
}

/// Judges a running deployment at `now`, given its environment's timeout in minutes and
/// what its credentials say of its sandbox.
fn verdict(
    deployment: &Deployment,
    minutes: u32,
    signs: SignsOfLife,
    now: DateTime<Utc>,
) -> Verdict {
    if timed_out(deployment, minutes, now) {
        return Verdict::TimedOut;
    }
    let Some(launched) = deployment.launched_at else {
        let since = deployment.running_since.unwrap_or(deployment.updated_at);
        if now - since > UNLAUNCHED_LIMIT {
            return Verdict::NotStarted(
                "its sandbox was never launched: the dispatcher stopped between starting the attempt and launching it".into(),
            );
        }
        return Verdict::Healthy;
    };
    let last_sign = signs
        .last_heartbeat
        .map_or(launched, |beat| beat.max(launched));
    if now - last_sign <= SILENCE_LIMIT {
        return Verdict::Healthy;
    }
    let limit = duration_words(SILENCE_LIMIT.num_minutes() as u32);
    if signs.started {
        Verdict::Silent(format!(
            "its runner stopped sending heartbeats: none for {limit} (the last at {})",
            last_sign.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    } else {
        Verdict::NotStarted(format!(
            "its sandbox did not start within {limit} of its launch"
        ))
    }
}

/// Whether the deployment's current phase has run longer than `minutes` at `now`.
fn timed_out(deployment: &Deployment, minutes: u32, now: DateTime<Utc>) -> bool {
    deployment
        .running_since
        .or(deployment.started_at)
        .is_some_and(|since| now - since > Duration::minutes(i64::from(minutes)))
}

/// `2h`, `1h 30m`, `45m`.
fn duration_words(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, minutes) => format!("{minutes}m"),
        (hours, 0) => format!("{hours}h"),
        (hours, minutes) => format!("{hours}h {minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_since(since: Option<DateTime<Utc>>, started: Option<DateTime<Utc>>) -> Deployment {
        let json = serde_json::json!({
            "id": "dep_1", "environment_id": "env_1", "project_id": "prj_1",
            "action": "apply", "status": "running", "requires_approval": false,
            "revision": "main", "commit": null, "steps": [], "plan_summary": null,
            "reason": null, "cancel_requested": false, "attempt": 2,
            "requested_by": "key", "approved_by": null,
            "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
            "started_at": started, "running_since": since, "finished_at": null,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_phase_times_out_after_its_environments_minutes_counted_from_its_dispatch() {
        let start: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let phase = start + Duration::hours(5);
        // The approval wait (10:00 to 15:00) does not count.
        let deployment = running_since(Some(phase), Some(start));
        assert!(!timed_out(&deployment, 120, phase + Duration::minutes(120)));
        assert!(timed_out(&deployment, 120, phase + Duration::minutes(121)));
        // Recorded before running_since existed: from its start.
        let older = running_since(None, Some(start));
        assert!(timed_out(&older, 120, start + Duration::minutes(121)));
        assert!(!timed_out(&running_since(None, None), 1, phase));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_words(120), "2h");
        assert_eq!(duration_words(90), "1h 30m");
        assert_eq!(duration_words(45), "45m");
        assert_eq!(duration_words(1440), "24h");
    }
}
