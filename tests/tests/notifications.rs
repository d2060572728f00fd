//! Notifications on the platform in process, with a scripted target: who may add a
//! target, what it is shown and sent (signed, or in Slack's format), and that a target
//! that fails or refuses is retried with backoff or dropped without touching the
//! deployment that caused it; and, over HTTP with real Terraform, targets on loopback
//! that fail or are slow.

use std::time::Duration;

use chrono::Duration as Minutes;
use envplane_core::deployment::{DeploymentStatus, PhaseResult};
use envplane_core::github::signature_matches;
use envplane_core::model::CreatedNotificationTarget;
use envplane_core::ports::{NotificationDelivery, SendError};
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::MAX_NOTIFICATION_ATTEMPTS;
use envplane_e2e::kit::{from, Kit};
use envplane_e2e::{eventually, git_repository, notification_target, spawn_app, GREETING_CONFIG};
use serde_json::{json, Value};

const HOOK: &str = "https://hooks.example.com/envplane/T0K3N";
const SLACK: &str = "https://hooks.slack.com/services/T000/B000/SLACKSECRET";

async fn target(kit: &Kit, kind: &str, url: &str, events: Value) -> CreatedNotificationTarget {
    let body = json!({
        "project_id": kit.project_id, "name": kind, "kind": kind, "url": url, "events": events,
    });
    kit.platform
        .create_notification_target(&kit.caller, from(body))
        .await
        .unwrap()
}

/// Runs a plan of a new environment to `result`; answers the deployment's id.
async fn planned(kit: &Kit, name: &str, result: PhaseResult) -> String {
    let environment = kit.environment(name).await;
    let id = kit.deploy(&environment).await;
    kit.deliver().await;
    let runner = kit.start_runner(&id).await;
    kit.finish(&runner, result).await;
    id
}

fn deliveries(kit: &Kit) -> Vec<NotificationDelivery> {
    kit.notifier
        .take()
        .into_iter()
        .map(|(delivery, _)| delivery)
        .collect()
}

#[tokio::test]
async fn a_signed_webhook_and_a_slack_message_tell_of_a_failed_deployment() {
    let kit = Kit::new(4).await;
    let events = json!(["deployment.failed", "deployment.succeeded"]);
    let webhook = target(&kit, "webhook", HOOK, events.clone()).await;
    let slack = target(&kit, "slack", SLACK, json!(["deployment.failed"])).await;
    let secret = webhook
        .secret
        .clone()
        .expect("a webhook target's secret, once");
    assert!(slack.secret.is_none());
    // Neither the URL's path (Slack's is a credential) nor the secret is shown again.
    let shown = serde_json::to_string(
        &kit.platform
            .list_notification_targets(&kit.caller, None, &Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    assert!(shown.contains("https://hooks.slack.com"), "{shown}");
    for hidden in ["SLACKSECRET", "T0K3N", secret.expose_secret()] {
        assert!(!shown.contains(hidden), "{shown}");
    }

    let failed = planned(&kit, "staging", PhaseResult::Failed).await;
    let queued = deliveries(&kit);
    assert_eq!(queued.len(), 2, "{queued:?}");
    for delivery in &queued {
        kit.platform.deliver_notification(delivery).await.unwrap();
    }
    let posted = kit.sender.posted();
    let to_hook = posted.iter().find(|p| p.url == HOOK).unwrap();
    let signature = to_hook
        .headers
        .iter()
        .find(|(name, _)| *name == "x-envplane-signature-256")
        .map(|(_, value)| value.as_str());
    assert!(signature_matches(
        secret.expose_secret().as_bytes(),
        &to_hook.body,
        signature
    ));
    let delivery_id = to_hook
        .headers
        .iter()
        .find(|(name, _)| *name == "x-envplane-delivery")
        .map(|(_, value)| value.clone());
    assert_eq!(delivery_id, Some(format!("{failed}.deployment.failed")));
    let body: Value = serde_json::from_slice(&to_hook.body).unwrap();
    assert_eq!(body["event"], "deployment.failed");
    assert_eq!(body["deployment_id"], failed);
    assert_eq!(body["environment_name"], "staging");
    assert_eq!(body["reason"], "the runner said so");
    let to_slack = posted.iter().find(|p| p.url == SLACK).unwrap();
    let text: Value = serde_json::from_slice(&to_slack.body).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .starts_with("envplane: staging plan failed: the runner said so"),
        "{text}"
    );
    assert!(to_slack
        .headers
        .iter()
        .all(|(name, _)| *name != "x-envplane-signature-256"));

    // Only the events a target asked for reach it.
    planned(&kit, "prod", PhaseResult::Succeeded).await;
    let succeeded = deliveries(&kit);
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0].target_id, webhook.target.id);
}

#[tokio::test]
async fn a_target_that_fails_is_retried_with_backoff_then_dropped_and_fails_nothing() {
    let kit = Kit::new(4).await;
    target(&kit, "webhook", HOOK, json!(["deployment.succeeded"])).await;
    let id = planned(&kit, "staging", PhaseResult::Succeeded).await;
    assert_eq!(
        kit.deployment(&id).await.status,
        DeploymentStatus::Succeeded
    );

    let failing = || Err(SendError::Retry("answered 503".into()));
    kit.sender
        .answer((0..MAX_NOTIFICATION_ATTEMPTS).map(|_| failing()).collect());
    let mut delays = Vec::new();
    let mut queued = kit.notifier.take();
    while let Some((delivery, delay)) = queued.pop() {
        delays.push(delay.as_secs());
        kit.platform.deliver_notification(&delivery).await.unwrap();
        queued = kit.notifier.take();
    }
    assert_eq!(
        delays,
        [0, 2, 8, 32, 128],
        "each retry waits longer, then it is dropped"
    );
    assert_eq!(
        kit.sender.posted().len(),
        MAX_NOTIFICATION_ATTEMPTS as usize
    );
    assert_eq!(
        kit.deployment(&id).await.status,
        DeploymentStatus::Succeeded
    );

    // One that comes through on its second try is not sent again.
    planned(&kit, "prod", PhaseResult::Succeeded).await;
    kit.sender.answer(vec![failing()]);
    let first = deliveries(&kit).remove(0);
    kit.platform.deliver_notification(&first).await.unwrap();
    let (second, delay) = kit.notifier.take().remove(0);
    assert_eq!((second.attempt, delay), (2, Duration::from_secs(2)));
    kit.platform.deliver_notification(&second).await.unwrap();
    assert!(kit.notifier.take().is_empty());

    // A refusal (a 4xx, an address the platform may not call) is not tried again.
    planned(&kit, "dev", PhaseResult::Succeeded).await;
    kit.sender
        .answer(vec![Err(SendError::Refused("answered 404".into()))]);
    let refused = deliveries(&kit).remove(0);
    kit.platform.deliver_notification(&refused).await.unwrap();
    assert!(kit.notifier.take().is_empty());
}

#[tokio::test]
async fn approvals_waiting_and_ended_times_to_live_are_told_too() {
    let kit = Kit::new(4).await;
    let events = json!(["deployment.waiting_for_approval", "environment.expired"]);
    target(&kit, "slack", SLACK, events).await;
    let environment = kit
        .environment_with("preview", json!({"requires_approval": true, "ttl": "30m"}))
        .await;
    let body = json!({"action": "apply"});
    let apply = kit
        .platform
        .create_deployment(&kit.caller, &environment.id, from(body))
        .await
        .unwrap();
    kit.deliver().await;
    let runner = kit.start_runner(&apply.id).await;
    kit.finish(&runner, PhaseResult::PlanReady).await;
    let waiting = deliveries(&kit);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].notification.deployment_id, Some(apply.id));

    kit.clock.advance(Minutes::minutes(31));
    kit.platform.run_scheduler().await.unwrap();
    let expired = deliveries(&kit);
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].notification.environment_id, environment.id);
}

#[tokio::test]
async fn only_project_admins_add_targets_and_only_on_public_https_hosts() {
    let kit = Kit::new(4).await;
    let body = |url: &str| {
        from(json!({
            "project_id": kit.project_id, "name": "ops", "kind": "webhook", "url": url,
            "events": ["deployment.failed"],
        }))
    };
    for (url, says) in [
        ("http://hooks.example.com/x", "https"),
        ("https://169.254.169.254/latest/meta-data/", "public host"),
        ("https://10.0.0.7/hook", "public host"),
        ("https://[::1]:8080/hook", "public host"),
        ("https://localhost/hook", "public host"),
    ] {
        let error = kit
            .platform
            .create_notification_target(&kit.caller, body(url))
            .await
            .unwrap_err();
        assert!(error.to_string().contains(says), "{url}: {error}");
    }
    let no_events = from(json!({
        "project_id": kit.project_id, "name": "ops", "kind": "slack", "url": SLACK, "events": [],
    }));
    let error = kit
        .platform
        .create_notification_target(&kit.caller, no_events)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at least one"), "{error}");

    // A deleted target's deliveries on their way are dropped.
    let created = target(&kit, "webhook", HOOK, json!(["deployment.failed"])).await;
    planned(&kit, "staging", PhaseResult::Failed).await;
    let queued = deliveries(&kit);
    kit.platform
        .delete_notification_target(&kit.caller, &created.target.id)
        .await
        .unwrap();
    kit.platform.deliver_notification(&queued[0]).await.unwrap();
    assert!(kit.sender.posted().is_empty());
    // And a deleted target is told of nothing new.
    planned(&kit, "prod", PhaseResult::Failed).await;
    assert!(deliveries(&kit).is_empty());
}

/// Over HTTP with real Terraform: only project admins add targets; a target answering
/// 500 and one slower than the sender's timeout hold the deployment up not at all, and
/// each gets its notification on a retry.
#[tokio::test]
async fn a_failing_and_a_slow_target_hold_nothing_up_and_are_retried() {
    let app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "staging", false).await;
    let (failing, failing_saw) = notification_target(vec![500], Duration::ZERO).await;
    let slow_by = envplane_webhooks::TIMEOUT + Duration::from_secs(2);
    let (slow, slow_saw) = notification_target(vec![], slow_by).await;
    let body = |kind: &str, url: &str| {
        json!({
            "project_id": seeded.project_id, "name": kind, "kind": kind, "url": url,
            "events": ["deployment.succeeded"],
        })
    };
    let deployer = app.key(&app.admin_key, "deployer", None).await;
    app.post(
        "/v1/notification-targets",
        &deployer,
        body("webhook", &failing),
    )
    .await
    .expect_error(403, "forbidden");
    let created = app
        .post(
            "/v1/notification-targets",
            &app.admin_key,
            body("webhook", &failing),
        )
        .await
        .expect(201);
    let secret = created["secret"].as_str().unwrap().to_string();
    app.post(
        "/v1/notification-targets",
        &app.admin_key,
        body("slack", &slow),
    )
    .await
    .expect(201);
    let shown = app
        .get(
            &format!(
                "/v1/notification-targets/{}",
                created["id"].as_str().unwrap()
            ),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(shown.get("secret"), None, "{shown}");

    let id = app.deploy(&seeded.environment_id, "plan").await;
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    eventually("the failing target's retry", || async {
        let saw = failing_saw.lock().unwrap().clone();
        (saw.len() >= 2)
            .then_some(())
            .ok_or_else(|| format!("{} calls", saw.len()))
    })
    .await;
    let (signature, body) = failing_saw.lock().unwrap()[1].clone();
    assert!(signature_matches(
        secret.as_bytes(),
        &body,
        signature.as_deref()
    ));
    let notification: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notification["deployment_id"], id);
    // Its first call timed out: a second one follows.
    eventually("the slow target's retry", || async {
        let calls = slow_saw.lock().unwrap().len();
        (calls >= 2)
            .then_some(())
            .ok_or_else(|| format!("{calls} calls"))
    })
    .await;
}
