//! Notifications: a project's targets (generic signed webhooks, Slack), and the
//! deliveries of what happened to them, queued and retried with backoff so a slow or
//! failing target never holds up or fails what caused them.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::{generate_notification_secret, Caller, Role};
use crate::deployment::{Deployment, DeploymentStatus};
use crate::ids::new_id;
use crate::model::{
    CreateNotificationTarget, CreatedNotificationTarget, Environment, Listing, NotificationTarget,
    Project,
};
use crate::notification::{BudgetNotice, Notification, NotificationEvent, TargetKind, TargetUrl};
use crate::ports::{Kind, NotificationDelivery, SendError, WriteOp};
use crate::{validate, Error, Result};

use super::{changed_meanwhile, record, Loaded, PageRequest, Platform, Stored};

/// Deliveries tried per notification and target, the first included.
pub const MAX_NOTIFICATION_ATTEMPTS: u32 = 5;
/// Targets a project may have.
const MAX_TARGETS_PER_PROJECT: usize = 20;

/// A target as stored: what the API shows, and its sealed URL and secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTarget {
    target: NotificationTarget,
    sealed_url: String,
    sealed_secret: Option<String>,
}

impl Stored for StoredTarget {
    const KIND: Kind = Kind::NotificationTarget;
    const NOUN: &'static str = "notification target";
}

/// Which of a project's targets take which events, under the project's id: a
/// deployment's end learns whom to tell with one point read, not a listing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProjectRoutes {
    routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Route {
    target_id: String,
    events: Vec<NotificationEvent>,
}

impl Stored for ProjectRoutes {
    const KIND: Kind = Kind::NotificationRoutes;
    const NOUN: &'static str = "notification routes";
}

/// How long before delivery `attempt` (1-based retries): 2 s, 8 s, 32 s, 128 s.
pub fn notification_backoff(attempt: u32) -> Duration {
    Duration::from_secs(2 * 4u64.pow(attempt.saturating_sub(1).min(4)))
}

impl Platform {
    /// Adds a target to a project (admins of the project). A webhook target's secret is
    /// answered this once.
    pub async fn create_notification_target(
        &self,
        caller: &Caller,
        input: CreateNotificationTarget,
    ) -> Result<CreatedNotificationTarget> {
        caller.require(Role::Admin, Some(&input.project_id))?;
        if !self.settings.notifications {
            return Err(Error::conflict(
                "notifications are turned off on this installation",
            ));
        }
        let name = validate::name("name", &input.name)?;
        let url = TargetUrl::parse(&input.url, self.settings.allow_private_notification_targets)?;
        let events = distinct_events(input.events)?;
        self.load::<Project>(&caller.org_id, &input.project_id)
            .await?;
        let routes = self
            .find::<ProjectRoutes>(&caller.org_id, &input.project_id)
            .await?;
        let routed = routes.as_ref().map_or(0, |found| found.value.routes.len());
        if routed >= MAX_TARGETS_PER_PROJECT {
            return Err(Error::conflict(format!(
                "a project has at most {MAX_TARGETS_PER_PROJECT} notification targets"
            )));
        }
        let secret = (input.kind == TargetKind::Webhook).then(generate_notification_secret);
        let org_id = &caller.org_id;
        let sealed_secret = match &secret {
            Some(secret) => Some(self.key_ring.seal(org_id, secret).await?),
            None => None,
        };
        let sealed_url = self
            .key_ring
            .seal(org_id, &SecretString::from(url.as_str().to_string()))
            .await?;
        let target = NotificationTarget {
            id: new_id("ntf"),
            project_id: input.project_id,
            name,
            kind: input.kind,
            origin: url.origin(),
            events,
            created_at: self.now(),
        };
        let stored = StoredTarget {
            target: target.clone(),
            sealed_url,
            sealed_secret,
        };
        let insert = record(org_id, &target.id, Some(&target.project_id), None, &stored)?;
        let route = Route {
            target_id: target.id.clone(),
            events: target.events.clone(),
        };
        let routes_write = match routes {
            Some(mut found) => {
                found.value.routes.push(route);
                found.replace()?
            }
            None => {
                let routes = ProjectRoutes {
                    routes: vec![route],
                };
                WriteOp::Insert(record(org_id, &target.project_id, None, None, &routes)?)
            }
        };
        let audited = (Kind::NotificationTarget, target.id.as_str());
        let ops = vec![WriteOp::Insert(insert), routes_write];
        self.commit_audited(caller, "notification_target.create", audited, ops)
            .await
            .map_err(changed_meanwhile)?;
        Ok(CreatedNotificationTarget { target, secret })
    }

    pub async fn list_notification_targets(
        &self,
        caller: &Caller,
        project_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Listing<NotificationTarget>> {
        let project_id = self.listing_scope(caller, project_id)?;
        let (loaded, next) = self
            .page_loaded::<StoredTarget>(&caller.org_id, project_id.as_deref(), page, false)
            .await?;
        let items = loaded
            .into_iter()
            .map(|found| found.value.target)
            .filter(|target| {
                caller
                    .require(Role::Viewer, Some(&target.project_id))
                    .is_ok()
            })
            .collect();
        Ok(Listing { items, next })
    }

    pub async fn get_notification_target(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<NotificationTarget> {
        let target = self
            .load::<StoredTarget>(&caller.org_id, id)
            .await?
            .value
            .target;
        caller.require(Role::Viewer, Some(&target.project_id))?;
        Ok(target)
    }

    pub async fn delete_notification_target(&self, caller: &Caller, id: &str) -> Result<()> {
        let loaded = self.load::<StoredTarget>(&caller.org_id, id).await?;
        let project_id = &loaded.value.target.project_id;
        caller.require(Role::Admin, Some(project_id))?;
        let mut ops = vec![loaded.delete()];
        if let Some(mut routes) = self
            .find::<ProjectRoutes>(&caller.org_id, project_id)
            .await?
        {
            routes.value.routes.retain(|route| route.target_id != id);
            ops.push(if routes.value.routes.is_empty() {
                routes.delete()
            } else {
                routes.replace()?
            });
        }
        let audited = (Kind::NotificationTarget, id);
        self.commit_audited(caller, "notification_target.delete", audited, ops)
            .await
            .map_err(changed_meanwhile)
    }

    /// Tells the project's targets that the deployment reached `status`, when it is one
    /// they can be told of. Never fails: a notification lost is logged.
    pub(super) async fn notify_status(&self, org_id: &str, deployment: &Deployment) {
        let event = match deployment.status {
            DeploymentStatus::Succeeded => NotificationEvent::DeploymentSucceeded,
            DeploymentStatus::Failed => NotificationEvent::DeploymentFailed,
            DeploymentStatus::WaitingForApproval => NotificationEvent::DeploymentWaitingForApproval,
            _ => return,
        };
        self.notify(org_id, deployment, event).await;
    }

    /// Queues a delivery of `event` about `deployment` to each of its project's
    /// targets that asked for it.
    pub(super) async fn notify(
        &self,
        org_id: &str,
        deployment: &Deployment,
        event: NotificationEvent,
    ) {
        if let Err(error) = self.try_notify(org_id, deployment, event).await {
            tracing::error!(deployment_id = %deployment.id, event = event.as_str(), %error, "queueing notifications failed");
        }
    }

    async fn try_notify(
        &self,
        org_id: &str,
        deployment: &Deployment,
        event: NotificationEvent,
    ) -> Result<()> {
        let targets = self
            .routed_targets(org_id, &deployment.project_id, event)
            .await?;
        if targets.is_empty() {
            return Ok(());
        }
        let environment_name = self
            .find::<Environment>(org_id, &deployment.environment_id)
            .await?
            .map_or_else(
                || deployment.environment_id.clone(),
                |found| found.value.name,
            );
        let notification = Notification {
            event,
            organization_id: org_id.to_string(),
            project_id: deployment.project_id.clone(),
            environment_id: deployment.environment_id.clone(),
            environment_name,
            deployment_id: Some(deployment.id.clone()),
            action: Some(deployment.action),
            reason: deployment.reason.clone(),
            url: self.api_url(&format!("v1/deployments/{}", deployment.id)),
            at: self.now(),
            budget: None,
        };
        self.enqueue_to(org_id, targets, &notification).await;
        Ok(())
    }

    /// Tells the project's targets that `environment`'s spend reached a budget
    /// threshold.
    pub(super) async fn notify_budget(
        &self,
        org_id: &str,
        environment: &Environment,
        budget: BudgetNotice,
    ) -> Result<()> {
        let event = NotificationEvent::BudgetThreshold;
        let targets = self
            .routed_targets(org_id, &environment.project_id, event)
            .await?;
        let notification = Notification {
            event,
            organization_id: org_id.to_string(),
            project_id: environment.project_id.clone(),
            environment_id: environment.id.clone(),
            environment_name: environment.name.clone(),
            deployment_id: None,
            action: None,
            reason: None,
            url: self.api_url(&format!("v1/environments/{}/costs", environment.id)),
            at: self.now(),
            budget: Some(budget),
        };
        self.enqueue_to(org_id, targets, &notification).await;
        Ok(())
    }

    /// The targets of `project_id` that asked for `event` (none when notifications are
    /// off).
    async fn routed_targets(
        &self,
        org_id: &str,
        project_id: &str,
        event: NotificationEvent,
    ) -> Result<Vec<String>> {
        if !self.settings.notifications {
            return Ok(Vec::new());
        }
        Ok(self
            .find::<ProjectRoutes>(org_id, project_id)
            .await?
            .map(|found| found.value.routes)
            .unwrap_or_default()
            .into_iter()
            .filter(|route| route.events.contains(&event))
            .map(|route| route.target_id)
            .collect())
    }

    async fn enqueue_to(&self, org_id: &str, targets: Vec<String>, notification: &Notification) {
        for target_id in targets {
            let delivery = NotificationDelivery {
                org_id: org_id.to_string(),
                target_id,
                notification: notification.clone(),
                attempt: 1,
            };
            self.notifier.enqueue(delivery, Duration::ZERO).await;
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}/{path}", self.settings.public_url.trim_end_matches('/'))
    }

    /// Delivers one notification to its target. One the target did not take is queued
    /// again with backoff, up to [`MAX_NOTIFICATION_ATTEMPTS`] deliveries; one it
    /// refused, or a target deleted meanwhile, is dropped (logged). An error means the
    /// delivery could not even be tried or queued again: whoever handed it over keeps it.
    pub async fn deliver_notification(&self, delivery: &NotificationDelivery) -> Result<()> {
        let Some(loaded) = self
            .find::<StoredTarget>(&delivery.org_id, &delivery.target_id)
            .await?
        else {
            return Ok(());
        };
        let target_id = &delivery.target_id;
        let (url, headers, body) = self
            .prepared(&delivery.org_id, &loaded, &delivery.notification)
            .await?;
        match self.sender.post(&url, headers, body).await {
            Ok(()) => Ok(()),
            Err(SendError::Refused(reason)) => {
                tracing::warn!(%target_id, %reason, "a notification target refused a notification; dropped");
                Ok(())
            }
            Err(SendError::Retry(reason)) if delivery.attempt >= MAX_NOTIFICATION_ATTEMPTS => {
                tracing::warn!(%target_id, %reason, attempts = delivery.attempt, "a notification was not taken after every attempt; dropped");
                Ok(())
            }
            Err(SendError::Retry(reason)) => {
                tracing::info!(%target_id, %reason, attempt = delivery.attempt, "a notification was not taken; it is tried again later");
                let again = NotificationDelivery {
                    attempt: delivery.attempt + 1,
                    ..delivery.clone()
                };
                let delay = notification_backoff(delivery.attempt);
                self.notifier.enqueue(again, delay).await;
                Ok(())
            }
        }
    }

    /// The target's URL, the request's headers (signed for a webhook) and its body.
    async fn prepared(
        &self,
        org_id: &str,
        loaded: &Loaded<StoredTarget>,
        notification: &Notification,
    ) -> Result<(TargetUrl, Vec<(&'static str, String)>, Vec<u8>)> {
        let stored = &loaded.value;
        let opened = self.key_ring.open(org_id, &stored.sealed_url).await?;
        let url = TargetUrl::parse(
            opened.expose_secret(),
            self.settings.allow_private_notification_targets,
        )?;
        let body = notification.body(stored.target.kind);
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-envplane-event", notification.event.as_str().to_string()),
            ("x-envplane-delivery", notification.delivery_id()),
        ];
        if let Some(sealed) = &stored.sealed_secret {
            let secret = self.key_ring.open(org_id, sealed).await?;
            let signature = crate::github::sign(secret.expose_secret().as_bytes(), &body);
            headers.push(("x-envplane-signature-256", signature));
        }
        Ok((url, headers, body))
    }
}

/// The events asked for, each once; at least one.
fn distinct_events(events: Vec<NotificationEvent>) -> Result<Vec<NotificationEvent>> {
    let mut distinct = Vec::with_capacity(events.len());
    for event in events {
        if !distinct.contains(&event) {
            distinct.push(event);
        }
    }
    if distinct.is_empty() {
        return Err(Error::invalid("events must name at least one event"));
    }
    Ok(distinct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time() {
        let delays: Vec<u64> = (1..MAX_NOTIFICATION_ATTEMPTS)
            .map(|attempt| notification_backoff(attempt).as_secs())
            .collect();
        assert_eq!(delays, [2, 8, 32, 128]);
    }
}
