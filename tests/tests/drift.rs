//! Drift detection on the platform in process, with a clock the tests move and the
//! sandbox played by the test: a drift check is a plan on the environment's drift
//! calendar that never applies; what it finds is recorded on the environment and told
//! on a change of status only; auto-remediation queues one apply, with the approval
//! rules of any other, and the calendar waits for it. Real drift of real resources,
//! with real Terraform, is in `drift_terraform.rs`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use envplane_core::auth::{Caller, Role};
use envplane_core::deployment::{
    Action, Deployment, DeploymentStatus, PhaseResult, PlanSummary, Trigger,
};
use envplane_core::drift::DriftStatus;
use envplane_core::model::Environment;
use envplane_core::ports::Clock;
use envplane_core::schedule::ScheduledJob;
use envplane_core::service::SchedulerRound;
use envplane_e2e::kit::{from, Kit};
use serde_json::{json, Value};

/// Monday 2026-12-07, 05:00 UTC.
fn monday_dawn() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 5, 0, 0).unwrap()
}

fn daily_check(extra: Value) -> Value {
    let mut settings = json!({"schedules": {"drift": {"cron": "0 6 * * *"}}});
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    settings
}

/// `terraform show -json` of a plan that finds the instance's type changed outside
/// Terraform and would set it back.
fn drifted_plan() -> Value {
    let change = json!({"actions": ["update"], "before": {"instance_type": "t3.large"}, "after": {"instance_type": "t3.micro"}});
    json!({
        "format_version": "0.2",
        "resource_drift": [{"address": "testcloud_instance.web", "mode": "managed", "type": "testcloud_instance", "change": change}],
        "resource_changes": [
            {"address": "testcloud_instance.web", "mode": "managed", "type": "testcloud_instance", "change": change},
            {"address": "testcloud_volume.data", "mode": "managed", "type": "testcloud_volume", "change": {"actions": ["no-op"]}},
        ],
    })
}

fn changes() -> PlanSummary {
    PlanSummary {
        change: 1,
        ..PlanSummary::default()
    }
}

async fn subscribe_to_drift(kit: &Kit) {
    let body = json!({
        "project_id": kit.project_id, "name": "on-call", "kind": "webhook",
        "url": "https://hooks.example.com/drift",
        "events": ["drift.detected", "drift.resolved", "drift.check_failed"],
    });
    kit.platform
        .create_notification_target(&kit.caller, from(body))
        .await
        .unwrap();
}

/// The drift events queued since the last call.
fn told(kit: &Kit) -> Vec<String> {
    kit.notifier
        .take()
        .into_iter()
        .map(|(delivery, _)| delivery.notification.event.as_str().to_string())
        .collect()
}

/// Moves the clock a day on, runs the scheduler and answers the check it queued.
async fn next_check(kit: &Kit, environment_id: &str) -> Deployment {
    kit.clock.advance(Duration::days(1));
    let round = kit.platform.run_scheduler().await.unwrap();
    assert_eq!(round.queued, 1, "{round:?}");
    let check = kit.deployments_of(environment_id).await.remove(0);
    assert_eq!(check.action, Action::Plan);
    assert!(check.is_drift_check(), "{:?}", check.trigger);
    check
}

/// Moves the clock a day on: the drift slot that comes queues nothing, for `why`.
async fn next_slot_queues_nothing(kit: &Kit, why: &str) {
    kit.clock.advance(Duration::days(1));
    let round = kit.platform.run_scheduler().await.unwrap();
    let skipped = SchedulerRound {
        skipped: 1,
        ..SchedulerRound::default()
    };
    assert_eq!(round, skipped, "{why}");
}

/// Plays the check's sandbox: its plan finds `summary` (`plan` its JSON).
async fn check_finds(kit: &Kit, check: &Deployment, summary: PlanSummary, plan: Value) {
    kit.deliver().await;
    let runner = kit.start_runner(&check.id).await;
    let done = kit.finish_planned(&runner, summary, plan).await;
    assert_eq!(done.status, DeploymentStatus::Succeeded);
}

/// Runs a person's `action` of the environment to success.
async fn run(kit: &Kit, environment_id: &str, action: &str) {
    let body = json!({ "action": action });
    let deployment = kit
        .platform
        .create_deployment(&kit.caller, environment_id, from(body))
        .await
        .unwrap();
    kit.deliver().await;
    let runner = kit.start_runner(&deployment.id).await;
    let done = kit.finish(&runner, PhaseResult::Succeeded).await;
    assert_eq!(done.status, DeploymentStatus::Succeeded);
}

/// A deployed environment with a daily drift check at 06:00 UTC, an hour from now.
async fn drifted_kit(extra: Value) -> (Kit, Environment) {
    let kit = Kit::new(4).await;
    kit.clock.set(monday_dawn());
    subscribe_to_drift(&kit).await;
    let environment = kit.environment_with("prod", daily_check(extra)).await;
    assert_eq!(environment.drift_status, DriftStatus::Unknown);
    let due = environment.schedules.drift.as_ref().unwrap().next_run_at;
    assert_eq!(due, monday_dawn() + Duration::hours(1));
    run(&kit, &environment.id, "apply").await;
    kit.notifier.take();
    (kit, environment)
}

#[tokio::test]
async fn a_check_that_finds_drift_marks_the_environment_and_tells_on_a_change_only() {
    let (kit, environment) = drifted_kit(json!({})).await;
    let check = next_check(&kit, &environment.id).await;
    check_finds(&kit, &check, changes(), drifted_plan()).await;

    let drifted = kit.environment_now(&environment.id).await;
    assert_eq!(drifted.drift_status, DriftStatus::Drifted);
    let found = drifted.drift_check.expect("the check is recorded");
    assert_eq!(found.deployment_id, check.id);
    assert_eq!(found.checked_at, kit.clock.now());
    let listed: Vec<_> = found
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r.changed_outside))
        .collect();
    assert_eq!(listed, [("testcloud_instance.web", true)]);
    assert_eq!(told(&kit), ["drift.detected"]);
    assert_eq!(
        kit.deployments_of(&environment.id).await.len(),
        2,
        "the apply and the check: a check never applies without auto-remediation"
    );

    // Still drifted the next day: recorded, not told again.
    let again = next_check(&kit, &environment.id).await;
    check_finds(&kit, &again, changes(), drifted_plan()).await;
    let still = kit.environment_now(&environment.id).await;
    assert_eq!(still.drift_check.unwrap().deployment_id, again.id);
    assert_eq!(told(&kit), Vec::<String>::new());

    // Someone set it back by hand: in sync, and told.
    let third = next_check(&kit, &environment.id).await;
    check_finds(&kit, &third, PlanSummary::default(), json!({})).await;
    let resolved = kit.environment_now(&environment.id).await;
    assert_eq!(resolved.drift_status, DriftStatus::InSync);
    assert!(resolved.drift_check.unwrap().resources.is_empty());
    assert_eq!(told(&kit), ["drift.resolved"]);
}

#[tokio::test]
async fn an_environment_in_sync_stays_quiet() {
    let (kit, environment) = drifted_kit(json!({})).await;
    for _ in 0..2 {
        let check = next_check(&kit, &environment.id).await;
        check_finds(&kit, &check, PlanSummary::default(), json!({})).await;
    }
    let checked = kit.environment_now(&environment.id).await;
    assert_eq!(checked.drift_status, DriftStatus::InSync);
    assert_eq!(told(&kit), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_check_is_an_error_and_is_told() {
    let (kit, environment) = drifted_kit(json!({})).await;
    let check = next_check(&kit, &environment.id).await;
    kit.deliver().await;
    let runner = kit.start_runner(&check.id).await;
    kit.finish(&runner, PhaseResult::Failed).await;
    let failed = kit.environment_now(&environment.id).await;
    assert_eq!(failed.drift_status, DriftStatus::Error);
    assert_eq!(told(&kit), ["drift.check_failed"]);
}

#[tokio::test]
async fn auto_remediation_applies_once_and_the_calendar_waits_for_it() {
    let (kit, environment) = drifted_kit(json!({"auto_remediate_drift": true})).await;
    let check = next_check(&kit, &environment.id).await;
    check_finds(&kit, &check, changes(), drifted_plan()).await;
    assert_eq!(told(&kit), ["drift.detected"]);

    let deployments = kit.deployments_of(&environment.id).await;
    assert_eq!(
        deployments.len(),
        3,
        "the apply, the check and one remediation"
    );
    let remediation = &deployments[0];
    assert_eq!(remediation.action, Action::Apply);
    assert!(remediation.is_drift_remediation());
    assert_eq!(
        remediation.revision, "c0ffee",
        "exactly the commit it checked"
    );
    assert!(matches!(
        remediation.trigger,
        Some(Trigger::Schedule {
            job: ScheduledJob::Drift,
            ..
        })
    ));

    // The next slot comes while the remediation has not run: no second check.
    next_slot_queues_nothing(&kit, "the remediation has not ended").await;

    kit.deliver().await;
    let runner = kit.start_runner(&remediation.id).await;
    let applied = kit.finish(&runner, PhaseResult::Succeeded).await;
    assert_eq!(applied.status, DeploymentStatus::Succeeded);
    let healed = kit.environment_now(&environment.id).await;
    assert_eq!(healed.drift_status, DriftStatus::InSync);
    assert_eq!(healed.drift_check.unwrap().deployment_id, remediation.id);
    assert_eq!(told(&kit), ["drift.resolved"]);
    assert_eq!(kit.deployments_of(&environment.id).await.len(), 3);
}

#[tokio::test]
async fn a_remediation_waits_for_approval_when_the_environment_requires_it() {
    let (kit, environment) = drifted_kit(json!({
        "auto_remediate_drift": true, "requires_approval": true,
    }))
    .await;
    let check = next_check(&kit, &environment.id).await;
    check_finds(&kit, &check, changes(), drifted_plan()).await;
    let remediation = kit.deployments_of(&environment.id).await.remove(0);
    assert!(remediation.is_drift_remediation());
    kit.deliver().await;
    let runner = kit.start_runner(&remediation.id).await;
    let planned = kit.finish(&runner, PhaseResult::PlanReady).await;
    assert_eq!(planned.status, DeploymentStatus::WaitingForApproval);
    assert_eq!(
        kit.environment_now(&environment.id).await.drift_status,
        DriftStatus::Drifted
    );
}

#[tokio::test]
async fn an_environment_that_is_not_deployed_is_not_checked() {
    let (kit, environment) = drifted_kit(json!({"auto_remediate_drift": true})).await;
    run(&kit, &environment.id, "destroy").await;
    next_slot_queues_nothing(
        &kit,
        "a destroyed environment would be all missing, and remediated back up",
    )
    .await;
    assert_eq!(kit.deployments_of(&environment.id).await.len(), 2);
    run(&kit, &environment.id, "apply").await;
    let check = next_check(&kit, &environment.id).await;
    assert!(check.is_drift_check());
}

#[tokio::test]
async fn only_an_admin_turns_auto_remediation_on() {
    let kit = Kit::new(4).await;
    let deployer = Caller {
        role: Role::Deployer,
        ..kit.caller.clone()
    };
    let body = json!({
        "name": "prod", "project_id": kit.project_id, "template_id": kit.template_id,
        "auto_remediate_drift": true,
    });
    let refused = kit
        .platform
        .create_environment(&deployer, from(body))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, envplane_core::Error::Forbidden(_)),
        "{refused:?}"
    );
    let environment = kit.environment("prod").await;
    let refused = kit
        .platform
        .update_environment(
            &deployer,
            &environment,
            from(json!({"auto_remediate_drift": true})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, envplane_core::Error::Forbidden(_)),
        "{refused:?}"
    );
}
