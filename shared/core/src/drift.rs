//! Drift: whether what an environment deployed still matches its code. A plan on the
//! environment's drift calendar (a drift check) finds out; it never applies, unless the
//! environment opts into auto-remediation, and then an apply follows with the approval
//! rules of any other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::deployment::{Action, Deployment, DeploymentStatus, Trigger};
use crate::notification::NotificationEvent;
use crate::schedule::ScheduledJob;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Never checked.
    #[default]
    Unknown,
    /// The last check planned no change.
    InSync,
    /// The last check planned changes: the infrastructure or its code moved.
    Drifted,
    /// The last check failed.
    Error,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::InSync => "in_sync",
            Self::Drifted => "drifted",
            Self::Error => "error",
        }
    }
}

/// A resource the last drift check would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftedResource {
    #[schema(example = "aws_instance.web")]
    pub address: String,
    /// What an apply would do to it (`create`, `update`, `delete`); empty when only its
    /// recorded state is refreshed.
    pub actions: Vec<String>,
    /// Whether Terraform found it changed outside Terraform.
    pub changed_outside: bool,
}

/// The last drift check of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftCheck {
    pub checked_at: DateTime<Utc>,
    /// The drift check that found it, or the apply that ended the drift.
    pub deployment_id: String,
    pub resources: Vec<DriftedResource>,
}

impl Deployment {
    /// Whether it is a plan of the environment's drift calendar.
    pub fn is_drift_check(&self) -> bool {
        self.action == Action::Plan && self.scheduled_by_drift()
    }

    /// Whether it is the apply that auto-remediation queued after a drift check.
    pub fn is_drift_remediation(&self) -> bool {
        self.action == Action::Apply && self.scheduled_by_drift()
    }

    fn scheduled_by_drift(&self) -> bool {
        matches!(
            self.trigger,
            Some(Trigger::Schedule {
                job: ScheduledJob::Drift,
                ..
            })
        )
    }
}

/// What the end of `deployment` says of its environment's drift: a drift check's
/// result; a successful apply brings a drifted environment back in sync. `None`: it
/// says nothing (a cancelled check, a destroy, a plan of a pull request).
pub fn status_after(deployment: &Deployment, current: DriftStatus) -> Option<DriftStatus> {
    use DeploymentStatus::{Failed, Succeeded};
    let changes = deployment.plan_summary.is_some_and(|s| s.has_changes());
    match (deployment.status, deployment.action) {
        (Succeeded, Action::Plan) if deployment.is_drift_check() => Some(if changes {
            DriftStatus::Drifted
        } else {
            DriftStatus::InSync
        }),
        (Failed, Action::Plan) if deployment.is_drift_check() => Some(DriftStatus::Error),
        (Succeeded, Action::Apply) if current == DriftStatus::Drifted => Some(DriftStatus::InSync),
        _ => None,
    }
}

/// Whether the environment is deployed after `ended`: a successful apply deploys it, a
/// successful destroy takes it down; `None`: unchanged.
pub fn deployed_after(ended: &Deployment) -> Option<bool> {
    match (ended.status, ended.action) {
        (DeploymentStatus::Succeeded, Action::Apply) => Some(true),
        (DeploymentStatus::Succeeded, Action::Destroy) => Some(false),
        _ => None,
    }
}

/// What a target is told when the drift status changes; quiet when nothing changed
/// or the first check finds the environment in sync.
pub fn status_change_event(before: DriftStatus, after: DriftStatus) -> Option<NotificationEvent> {
    match (before, after) {
        (before, after) if before == after => None,
        (_, DriftStatus::Drifted) => Some(NotificationEvent::DriftDetected),
        (DriftStatus::Drifted, DriftStatus::InSync) => Some(NotificationEvent::DriftResolved),
        (_, DriftStatus::Error) => Some(NotificationEvent::DriftCheckFailed),
        _ => None,
    }
}

/// The resources a plan (`terraform show -json`) would change, and those Terraform
/// found changed outside it, in the plan's order.
pub fn drifted_resources(plan: &Value) -> Vec<DriftedResource> {
    let entries = |member: &str| {
        plan[member]
            .as_array()
            .map(|entries| entries.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|entry| entry["mode"] != "data")
            .filter_map(|entry| Some((entry["address"].as_str()?, actions(entry))))
            .collect::<Vec<_>>()
    };
    let outside = entries("resource_drift");
    let mut resources: Vec<DriftedResource> = entries("resource_changes")
        .into_iter()
        .filter(|(_, actions)| !actions.iter().all(|a| a == "no-op" || a == "read"))
        .map(|(address, actions)| DriftedResource {
            address: address.to_string(),
            changed_outside: outside.iter().any(|(moved, _)| *moved == address),
            actions,
        })
        .collect();
    for (address, _) in outside {
        if !resources.iter().any(|listed| listed.address == address) {
            resources.push(DriftedResource {
                address: address.to_string(),
                actions: Vec::new(),
                changed_outside: true,
            });
        }
    }
    resources
}

fn actions(entry: &Value) -> Vec<String> {
    entry["change"]["actions"]
        .as_array()
        .map(|actions| {
            actions
                .iter()
                .filter_map(|action| action.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_lists_what_it_would_change_and_what_moved_outside_terraform() {
        let plan = json!({
            "resource_drift": [
                {"address": "testcloud_instance.web", "mode": "managed", "change": {"actions": ["update"]}},
                {"address": "testcloud_volume.gone", "mode": "managed", "change": {"actions": ["delete"]}},
                {"address": "testcloud_volume.tagged", "mode": "managed", "change": {"actions": ["update"]}},
            ],
            "resource_changes": [
                {"address": "testcloud_instance.web", "mode": "managed", "change": {"actions": ["update"]}},
                {"address": "testcloud_volume.gone", "mode": "managed", "change": {"actions": ["create"]}},
                {"address": "testcloud_volume.kept", "mode": "managed", "change": {"actions": ["no-op"]}},
                {"address": "data.testcloud_zone.here", "mode": "data", "change": {"actions": ["read"]}},
            ],
        });
        let resources = drifted_resources(&plan);
        let listed: Vec<_> = resources
            .iter()
            .map(|r| (r.address.as_str(), r.actions.join(","), r.changed_outside))
            .collect();
        assert_eq!(
            listed,
            [
                ("testcloud_instance.web", "update".to_string(), true),
                ("testcloud_volume.gone", "create".to_string(), true),
                ("testcloud_volume.tagged", String::new(), true),
            ]
        );
        assert!(drifted_resources(&json!(null)).is_empty());
    }

    #[test]
    fn only_a_change_of_status_is_told_and_a_first_check_in_sync_is_quiet() {
        use DriftStatus::*;
        assert_eq!(status_change_event(Unknown, InSync), None);
        assert_eq!(status_change_event(InSync, InSync), None);
        assert_eq!(status_change_event(Drifted, Drifted), None);
        assert_eq!(
            status_change_event(InSync, Drifted),
            Some(NotificationEvent::DriftDetected)
        );
        assert_eq!(
            status_change_event(Drifted, InSync),
            Some(NotificationEvent::DriftResolved)
        );
        assert_eq!(
            status_change_event(InSync, Error),
            Some(NotificationEvent::DriftCheckFailed)
        );
        assert_eq!(status_change_event(Error, InSync), None);
    }
}
