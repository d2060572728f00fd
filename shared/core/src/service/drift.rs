//! What a deployment's end does to its environment's drift, in the commit that ends it:
//! a drift check records what it found, an apply ends a drift, auto-remediation queues
//! the apply; a change of status is told once the commit stands.

use chrono::{DateTime, Utc};

use crate::deployment::{Action, Deployment};
use crate::drift::{drifted_resources, status_after, status_change_event, DriftCheck, DriftStatus};
use crate::model::Environment;
use crate::notification::NotificationEvent;
use crate::ports::WriteOp;
use crate::Result;

use super::deployments::queued_insert;
use super::Platform;

/// What follows the commit that changed an environment's drift.
#[derive(Debug, Default)]
pub(super) struct DriftAftermath {
    pub event: Option<NotificationEvent>,
    /// The apply auto-remediation queued, to announce.
    pub remediation: Option<Deployment>,
}

/// Whether the end of `deployment` may change its environment's drift (so the
/// conclusion reads the environment).
pub(super) fn may_change_drift(deployment: &Deployment) -> bool {
    status_after(deployment, DriftStatus::Drifted).is_some()
}

impl Platform {
    /// Records on `environment` what `ended` (final) found of its drift; the insert of
    /// the remediation it queues goes among `ops`.
    pub(super) async fn record_drift(
        &self,
        org_id: &str,
        environment: &mut Environment,
        ended: &Deployment,
        now: DateTime<Utc>,
        ops: &mut Vec<WriteOp>,
    ) -> Result<DriftAftermath> {
        let before = environment.drift_status;
        let Some(after) = status_after(ended, before) else {
            return Ok(DriftAftermath::default());
        };
        let resources = match after {
            DriftStatus::Drifted => self.drifted_resources(org_id, &ended.id).await,
            _ => Vec::new(),
        };
        environment.drift_status = after;
        environment.drift_check = Some(DriftCheck {
            checked_at: now,
            deployment_id: ended.id.clone(),
            resources,
        });
        let remediate = after == DriftStatus::Drifted
            && environment.auto_remediate_drift
            && ended.is_drift_check();
        let remediation = remediate.then(|| remediation(environment, ended, now));
        if let Some(remediation) = &remediation {
            ops.push(queued_insert(org_id, remediation)?);
            ops.push(self.scheduler_audit_event(
                org_id,
                "schedule.drift_remediation",
                &remediation.id,
                &ended.id,
            ));
            // The drift calendar waits for the remediation as it waits for its checks.
            if let Some(schedule) = environment.schedules.drift.as_mut() {
                schedule.last_deployment_id = Some(remediation.id.clone());
            }
        }
        Ok(DriftAftermath {
            event: status_change_event(before, after),
            remediation,
        })
    }

    /// What a drift check's plan would change; nothing listed when its plan view cannot
    /// be read (it drifted all the same: its plan had changes).
    async fn drifted_resources(
        &self,
        org_id: &str,
        check_id: &str,
    ) -> Vec<crate::drift::DriftedResource> {
        match self.plan_view(org_id, check_id).await {
            Ok(view) => drifted_resources(&view.json),
            Err(error) => {
                tracing::warn!(deployment_id = %check_id, %error, "the drift check's plan could not be read");
                Vec::new()
            }
        }
    }

    /// Once the end is committed: tells the change of status, starts the remediation.
    pub(super) async fn follow_drift(
        &self,
        org_id: &str,
        ended: &Deployment,
        aftermath: DriftAftermath,
    ) {
        if let Some(event) = aftermath.event {
            self.notify(org_id, ended, event).await;
        }
        if let Some(remediation) = aftermath.remediation {
            tracing::info!(environment_id = %remediation.environment_id, deployment_id = %remediation.id, "a drift check queued its remediation");
            self.announce(org_id, &remediation).await;
        }
    }
}

/// The apply that ends the drift `check` found, of exactly the commit it checked.
fn remediation(environment: &Environment, check: &Deployment, now: DateTime<Utc>) -> Deployment {
    let revision = check
        .commit
        .clone()
        .unwrap_or_else(|| check.revision.clone());
    Deployment::queued(
        environment,
        Action::Apply,
        revision,
        "scheduler:drift".to_string(),
        // A drift check's trigger: the drift calendar, and when it was due.
        check.trigger.clone(),
        now,
    )
}
