//! The scheduler: environments' jobs that come due (a time to live that ends, a deploy,
//! destroy or drift calendar that fires). It runs on a schedule (a loop in `envplane serve`, the
//! reaper on AWS), only where the platform is active. Each job's next run is a record
//! listed by its time, so a round reads what is due and nothing else; running a job is
//! one conditional commit on its environment, so two schedulers at once run it once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::deployment::{Action, Deployment, Trigger};
use crate::model::{Environment, Template};
use crate::notification::NotificationEvent;
use crate::ports::{IndexQuery, Kind, WriteOp};
use crate::schedule::ScheduledJob;
use crate::Result;

use super::deployments::queued_insert;
use super::{decode, key_of, record, retrying_conflicts, Loaded, Platform, Stored};

/// The index key every due-job record carries: the index lists them by id, which
/// starts with the due time.
const DUE_INDEX: &str = "due";
/// Due jobs read per round trip.
const DUE_PAGE: usize = 100;

/// When one job of an environment runs next.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DueJob {
    environment_id: String,
    job: ScheduledJob,
    due_at: DateTime<Utc>,
}

impl Stored for DueJob {
    const KIND: Kind = Kind::DueJob;
    const NOUN: &'static str = "scheduled job";
}

/// Sorts by due time (whole seconds, zero-padded), then job and environment.
fn due_job_id(environment_id: &str, job: ScheduledJob, due_at: DateTime<Utc>) -> String {
    format!(
        "{:012}.{}.{environment_id}",
        due_at.timestamp().max(0),
        job.as_str()
    )
}

/// The last id a run due by `now` can have: every id of its second or earlier (`~`
/// sorts after the job and environment that follow the time).
fn due_until(now: DateTime<Utc>) -> String {
    format!("{:012}.~", now.timestamp().max(0))
}

/// The writes that keep an environment's due-job records in step with its next runs,
/// committed with the change of the environment that moved them.
pub(super) fn due_job_writes(
    org_id: &str,
    environment_id: &str,
    before: &[(ScheduledJob, DateTime<Utc>)],
    after: &[(ScheduledJob, DateTime<Utc>)],
) -> Result<Vec<WriteOp>> {
    let mut writes = Vec::new();
    for &(job, due_at) in before.iter().filter(|run| !after.contains(run)) {
        writes.push(WriteOp::Delete {
            kind: Kind::DueJob,
            org_id: org_id.to_string(),
            id: due_job_id(environment_id, job, due_at),
            // Never replaced: a moved run is a new record.
            expected_version: 1,
        });
    }
    for &(job, due_at) in after.iter().filter(|run| !before.contains(run)) {
        let due = DueJob {
            environment_id: environment_id.to_string(),
            job,
            due_at,
        };
        let mut insert = record(
            org_id,
            &due_job_id(environment_id, job, due_at),
            None,
            None,
            &due,
        )?;
        insert.index_key = Some(DUE_INDEX.to_string());
        writes.push(WriteOp::Insert(insert));
    }
    Ok(writes)
}

/// What one scheduler round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerRound {
    /// Jobs that queued a deployment.
    pub queued: usize,
    /// Calendar runs that queued nothing: the deployment the calendar queued last had
    /// not ended, or a drift check found nothing deployed. The next run is counted from
    /// now.
    pub skipped: usize,
    /// Listed runs that had moved or gone (the environment changed or was deleted
    /// meanwhile, the listing lagged).
    pub stale: usize,
    /// Jobs that failed; logged, and due again next round.
    pub failed: usize,
    /// Nothing ran: this region is passive.
    pub passive: bool,
}

enum JobOutcome {
    Queued,
    Skipped,
    Stale,
}

impl Platform {
    /// One scheduler round: every job due by now runs once. A job missed while the
    /// platform was down runs once, not once per missed slot.
    pub async fn run_scheduler(&self) -> Result<SchedulerRound> {
        let mut round = SchedulerRound::default();
        if !self.acting().await? {
            round.passive = true;
            return Ok(round);
        }
        let now = self.now();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_indexed(IndexQuery {
                    kind: Kind::DueJob,
                    index_key: DUE_INDEX.to_string(),
                    after,
                    until: Some(due_until(now)),
                    limit: DUE_PAGE,
                })
                .await?;
            for stored in &page.items {
                let due: DueJob = decode(stored)?;
                if due.due_at > now {
                    return Ok(round);
                }
                let org_id = &stored.org_id;
                let ran = retrying_conflicts("the environment kept changing", || {
                    self.run_due_job(org_id, &due, now)
                })
                .await;
                match ran {
                    Ok(JobOutcome::Queued) => round.queued += 1,
                    Ok(JobOutcome::Skipped) => round.skipped += 1,
                    Ok(JobOutcome::Stale) => round.stale += 1,
                    Err(error) => {
                        round.failed += 1;
                        let (environment_id, job) = (&due.environment_id, due.job.as_str());
                        tracing::error!(%environment_id, job, %error, "a scheduled job failed");
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(round),
            }
        }
    }

    /// Runs one due job: queues its deployment (unless the one it queued last has not
    /// ended) and moves its next run, in one commit conditional on the environment.
    async fn run_due_job(
        &self,
        org_id: &str,
        due: &DueJob,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome> {
        let environment = self
            .find::<Environment>(org_id, &due.environment_id)
            .await?;
        let Some(mut environment) =
            environment.filter(|found| found.value.next_run(due.job) == Some(due.due_at))
        else {
            self.drop_orphan(org_id, due).await?;
            return Ok(JobOutcome::Stale);
        };
        let before = environment.value.next_runs();
        // Drift is of deployed infrastructure: a check of an environment that was never
        // applied, or destroyed since, would find everything missing (and its
        // remediation would bring back what a destroy calendar took down).
        let nothing_to_check = due.job == ScheduledJob::Drift && !environment.value.deployed;
        let deployment = if nothing_to_check
            || self
                .last_run_unfinished(org_id, &environment.value, due.job)
                .await?
        {
            None
        } else {
            Some(
                self.scheduled_deployment(org_id, &environment.value, due, now)
                    .await?,
            )
        };
        move_next_run(&mut environment.value, due.job, now, deployment.as_ref());
        let mut ops = vec![environment.replace()?];
        ops.extend(due_job_writes(
            org_id,
            &environment.value.id,
            &before,
            &environment.value.next_runs(),
        )?);
        let Some(deployment) = deployment else {
            self.store.commit(self.fenced(ops).await?).await?;
            return Ok(JobOutcome::Skipped);
        };
        ops.push(queued_insert(org_id, &deployment)?);
        let action = format!("schedule.{}", due.job.as_str());
        let request_id = due_job_id(&due.environment_id, due.job, due.due_at);
        ops.push(self.scheduler_audit_event(org_id, &action, &deployment.id, &request_id));
        self.store.commit(self.fenced(ops).await?).await?;
        tracing::info!(environment_id = %due.environment_id, job = due.job.as_str(), deployment_id = %deployment.id, "a scheduled job queued a deployment");
        self.announce(org_id, &deployment).await;
        if due.job == ScheduledJob::Ttl {
            self.notify(org_id, &deployment, NotificationEvent::EnvironmentExpired)
                .await;
        }
        Ok(JobOutcome::Queued)
    }

    /// A listed run its environment no longer has: the listing lagged behind the
    /// change that deleted it, or (a store left half-written by hand) it is an orphan,
    /// deleted now so that it is not read again every round.
    async fn drop_orphan(&self, org_id: &str, due: &DueJob) -> Result<()> {
        let id = due_job_id(&due.environment_id, due.job, due.due_at);
        let [orphan, environment] = self
            .get_records([
                key_of::<DueJob>(org_id, &id),
                key_of::<Environment>(org_id, &due.environment_id),
            ])
            .await?;
        let still_due = Loaded::<Environment>::found(environment)?
            .is_some_and(|found| found.value.next_run(due.job) == Some(due.due_at));
        if let (Some(orphan), false) = (Loaded::<DueJob>::found(orphan)?, still_due) {
            self.store.commit(vec![orphan.delete()]).await?;
        }
        Ok(())
    }

    /// Whether the deployment the calendar of `job` queued last has not ended.
    async fn last_run_unfinished(
        &self,
        org_id: &str,
        environment: &Environment,
        job: ScheduledJob,
    ) -> Result<bool> {
        // A time to live has no calendar: its run ends it, it never runs twice.
        let last = environment
            .schedules
            .get(job)
            .and_then(|schedule| schedule.last_deployment_id.as_deref());
        let Some(last) = last else {
            return Ok(false);
        };
        Ok(self
            .find::<Deployment>(org_id, last)
            .await?
            .is_some_and(|found| !found.value.status.is_final()))
    }

    async fn scheduled_deployment(
        &self,
        org_id: &str,
        environment: &Environment,
        due: &DueJob,
        now: DateTime<Utc>,
    ) -> Result<Deployment> {
        let template = self
            .load::<Template>(org_id, &environment.template_id)
            .await?
            .value;
        let action = match due.job {
            ScheduledJob::Deploy => Action::Apply,
            ScheduledJob::Ttl | ScheduledJob::Destroy => Action::Destroy,
            ScheduledJob::Drift => Action::Plan,
        };
        let revision = environment.revision.clone().unwrap_or(template.revision);
        let trigger = Trigger::Schedule {
            job: due.job,
            due_at: due.due_at,
        };
        let requested_by = format!("scheduler:{}", due.job.as_str());
        Ok(Deployment::queued(
            environment,
            action,
            revision,
            requested_by,
            Some(trigger),
            now,
        ))
    }
}

/// Moves the environment's next run of `job` past `now`: a time to live ends for good;
/// a calendar fires next after now (so runs missed while the platform was down collapse
/// into this one) and remembers the deployment it queued.
fn move_next_run(
    environment: &mut Environment,
    job: ScheduledJob,
    now: DateTime<Utc>,
    queued: Option<&Deployment>,
) {
    let environment_id = environment.id.clone();
    let Some(slot) = environment.schedules.slot(job) else {
        environment.expires_at = None;
        environment.ttl = None;
        return;
    };
    let Some(schedule) = slot else { return };
    if let Some(deployment) = queued {
        schedule.last_deployment_id = Some(deployment.id.clone());
    }
    match schedule.calendar().ok().and_then(|c| c.next_after(now)) {
        Some(next) => schedule.next_run_at = next,
        None => {
            tracing::warn!(%environment_id, job = job.as_str(), "the calendar fires no more; removed");
            *slot = None;
        }
    }
}
