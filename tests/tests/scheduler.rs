//! Scheduled jobs (a time to live that ends, deploy and destroy calendars) on the
//! platform in process, with a clock the tests move: each job runs once per due run,
//! never while its last deployment has not ended, once for a stretch the platform
//! missed, once when two schedulers run at the same moment, and not at all in a
//! passive region or after its environment changed.

use chrono::{DateTime, Duration, TimeZone, Utc};
use envplane_core::deployment::{Action, DeploymentStatus, PhaseResult, Trigger};
use envplane_core::ports::Clock;
use envplane_core::schedule::ScheduledJob;
use envplane_core::service::{PageRequest, SchedulerRound, Settings};
use envplane_e2e::eventually;
use envplane_e2e::kit::{from, Backend, Kit};
use serde_json::json;

/// Monday 2026-12-07, 07:00 in Berlin.
fn monday_morning_in_berlin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 6, 0, 0).unwrap()
}

fn weekday_mornings() -> serde_json::Value {
    json!({"schedules": {"deploy": {"cron": "0 8 * * 1-5", "time_zone": "Europe/Berlin"}}})
}

async fn round(kit: &Kit) -> SchedulerRound {
    kit.platform.run_scheduler().await.unwrap()
}

/// Runs the deployment's sandbox to the end, successfully.
async fn run_to_success(kit: &Kit, deployment_id: &str) {
    kit.deliver().await;
    let runner = kit.start_runner(deployment_id).await;
    let done = kit.finish(&runner, PhaseResult::Succeeded).await;
    assert_eq!(done.status, DeploymentStatus::Succeeded);
}

fn queued(count: usize) -> SchedulerRound {
    SchedulerRound {
        queued: count,
        ..SchedulerRound::default()
    }
}

#[tokio::test]
async fn a_time_to_live_queues_one_destroy_when_it_ends() {
    let kit = Kit::new(4).await;
    let created = kit.environment_with("preview", json!({"ttl": "8h"})).await;
    let expires_at = created.expires_at.expect("a ttl sets when it ends");
    assert_eq!(expires_at, created.created_at + Duration::hours(8));

    kit.clock.advance(Duration::hours(8) - Duration::seconds(1));
    assert_eq!(round(&kit).await, SchedulerRound::default(), "not yet");
    kit.clock.advance(Duration::seconds(1));
    assert_eq!(round(&kit).await, queued(1));

    let deployments = kit.deployments_of(&created.id).await;
    let [destroy] = &deployments[..] else {
        panic!("one destroy: {deployments:?}")
    };
    assert_eq!(destroy.action, Action::Destroy);
    assert_eq!(destroy.requested_by, "scheduler:ttl");
    assert_eq!(
        destroy.trigger,
        Some(Trigger::Schedule {
            job: ScheduledJob::Ttl,
            due_at: expires_at
        })
    );
    let ended = kit.environment_now(&created.id).await;
    assert_eq!((ended.ttl, ended.expires_at), (None, None));
    assert_eq!(kit.queue.take().len(), 1, "the destroy was announced");

    kit.clock.advance(Duration::days(30));
    assert_eq!(round(&kit).await, SchedulerRound::default(), "once");
    assert_eq!(kit.deployments_of(&created.id).await.len(), 1);
    let audit = kit
        .platform
        .list_audit_events(&kit.caller, &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "schedule.ttl" && e.actor_key_id == "scheduler"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn two_schedulers_at_the_same_moment_run_a_job_once() {
    let kit = Kit::new(4).await;
    let mut environments = Vec::new();
    for i in 0..5 {
        let name = format!("preview-{i}");
        environments.push(kit.environment_with(&name, json!({"ttl": "30m"})).await);
    }
    kit.clock.advance(Duration::minutes(31));
    let (first, second) = tokio::join!(round(&kit), round(&kit));
    assert_eq!(first.queued + second.queued, 5, "{first:?} {second:?}");
    for environment in environments {
        assert_eq!(kit.deployments_of(&environment.id).await.len(), 1);
    }
}

#[tokio::test]
async fn the_time_to_live_can_be_extended_shortened_or_removed() {
    let kit = Kit::new(4).await;
    let created = kit.environment_with("preview", json!({"ttl": "1h"})).await;
    let set = |body| kit.platform.set_ttl(&kit.caller, &created.id, from(body));

    let extended = set(json!({"ttl": "2d"})).await.unwrap();
    assert_eq!(
        extended.expires_at,
        Some(kit.clock.now() + Duration::days(2))
    );
    kit.clock.advance(Duration::hours(2));
    assert_eq!(round(&kit).await, SchedulerRound::default(), "extended");

    let at = kit.clock.now() + Duration::minutes(10);
    let shortened = set(json!({"expires_at": at})).await.unwrap();
    assert_eq!((shortened.ttl, shortened.expires_at), (None, Some(at)));
    kit.clock.advance(Duration::minutes(10));
    assert_eq!(round(&kit).await, queued(1), "shortened");

    let again = set(json!({"ttl": "1h"})).await.unwrap();
    assert!(again.expires_at.is_some());
    let removed = set(json!({"ttl": null})).await.unwrap();
    assert_eq!((removed.ttl, removed.expires_at), (None, None));
    kit.clock.advance(Duration::days(2));
    assert_eq!(round(&kit).await, SchedulerRound::default(), "removed");

    for (body, says) in [
        (json!({}), "either ttl"),
        (json!({"ttl": "1h", "expires_at": at}), "either ttl"),
        (json!({"expires_at": kit.clock.now()}), "in the future"),
        (
            json!({"expires_at": kit.clock.now() + Duration::days(367)}),
            "within 366 days",
        ),
        (json!({"ttl": "0h"}), "ttl must be"),
    ] {
        let error = set(body.clone()).await.unwrap_err().to_string();
        assert!(error.contains(says), "{body}: {error}");
    }
}

#[tokio::test]
async fn a_calendar_fires_once_per_slot_and_once_for_a_stretch_it_missed() {
    let kit = Kit::new(4).await;
    kit.clock.set(monday_morning_in_berlin());
    let created = kit.environment_with("staging", weekday_mornings()).await;
    let next = created.schedules.deploy.as_ref().unwrap().next_run_at;
    assert_eq!(next, monday_morning_in_berlin() + Duration::hours(1));

    kit.clock.set(next + Duration::seconds(20));
    assert_eq!(round(&kit).await, queued(1));
    assert_eq!(round(&kit).await, SchedulerRound::default(), "one per slot");
    let first = kit.deployments_of(&created.id).await.remove(0);
    assert_eq!(first.action, Action::Apply);
    run_to_success(&kit, &first.id).await;

    // Down from Monday 08:00 to Thursday 12:00: Tuesday's, Wednesday's and
    // Thursday's runs were missed; one runs now, the next is Friday's.
    kit.clock.set(next + Duration::days(3) + Duration::hours(4));
    assert_eq!(round(&kit).await, queued(1));
    assert_eq!(kit.deployments_of(&created.id).await.len(), 2);
    let schedule = kit
        .environment_now(&created.id)
        .await
        .schedules
        .deploy
        .unwrap();
    assert_eq!(schedule.next_run_at, next + Duration::days(4));
}

#[tokio::test]
async fn a_calendar_queues_nothing_while_its_last_deployment_has_not_ended() {
    let kit = Kit::new(4).await;
    kit.clock.set(monday_morning_in_berlin());
    let created = kit.environment_with("staging", weekday_mornings()).await;
    kit.clock.advance(Duration::hours(1));
    assert_eq!(round(&kit).await, queued(1));
    let waiting = kit.deployments_of(&created.id).await.remove(0);

    kit.clock.advance(Duration::days(1));
    let skipped = round(&kit).await;
    assert_eq!(
        skipped,
        SchedulerRound {
            skipped: 1,
            ..SchedulerRound::default()
        }
    );
    assert_eq!(kit.deployments_of(&created.id).await.len(), 1);

    run_to_success(&kit, &waiting.id).await;
    kit.clock.advance(Duration::days(1));
    assert_eq!(
        round(&kit).await,
        queued(1),
        "it ended: the next run queues"
    );
}

#[tokio::test]
async fn a_changed_or_deleted_environment_runs_what_it_has_now() {
    let kit = Kit::new(4).await;
    kit.clock.set(monday_morning_in_berlin());
    let calendar = kit.environment_with("calendar", weekday_mornings()).await;
    let expiring = kit
        .environment_with("expiring", json!({"ttl": "30m"}))
        .await;
    let evenings =
        json!({"schedules": {"destroy": {"cron": "0 20 * * *", "time_zone": "Europe/Berlin"}}});
    kit.platform
        .update_environment(&kit.caller, &calendar.id, from(evenings))
        .await
        .unwrap();
    kit.platform
        .delete_environment(&kit.caller, &expiring.id, false)
        .await
        .unwrap();

    // Monday 08:00 passed: the deploy calendar is gone, the other environment too.
    kit.clock.advance(Duration::hours(2));
    assert_eq!(round(&kit).await, SchedulerRound::default());
    // Monday 20:00 in Berlin: the destroy calendar fires.
    kit.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 7, 19, 0, 0).unwrap());
    assert_eq!(round(&kit).await, queued(1));
    let destroy = kit.deployments_of(&calendar.id).await.remove(0);
    assert_eq!(destroy.action, Action::Destroy);
    assert_eq!(destroy.requested_by, "scheduler:destroy");
}

#[tokio::test]
async fn a_run_the_lagging_index_still_lists_after_a_change_queues_nothing() {
    let kit = Kit::new(4).await;
    let created = kit.environment_with("preview", json!({"ttl": "30m"})).await;
    kit.store.lag();
    kit.platform
        .set_ttl(&kit.caller, &created.id, from(json!({"ttl": "2h"})))
        .await
        .unwrap();
    kit.clock.advance(Duration::minutes(31));
    let round = round(&kit).await;
    assert_eq!(round.queued, 0, "{round:?}");
    assert!(kit.deployments_of(&created.id).await.is_empty());
}

#[tokio::test]
async fn a_passive_region_runs_nothing() {
    let kit = Kit::with_settings(Settings {
        regions: envplane_e2e::kit::passive_region(),
        ..Settings::default()
    })
    .await;
    let created = kit.environment_with("preview", json!({"ttl": "30m"})).await;
    kit.clock.advance(Duration::hours(1));
    let round = round(&kit).await;
    assert!(round.passive);
    assert_eq!(round.queued, 0);
    assert!(kit.deployments_of(&created.id).await.is_empty());
}

#[tokio::test]
async fn bad_calendars_are_refused_with_the_reason() {
    let kit = Kit::new(4).await;
    let body = |schedules: serde_json::Value| {
        from(json!({
            "name": "staging", "project_id": kit.project_id, "template_id": kit.template_id,
            "schedules": schedules,
        }))
    };
    for (schedules, says) in [
        (json!({"deploy": {"cron": "0 8 * *"}}), "five-field"),
        (json!({"deploy": {"cron": "0 0 8 * * *"}}), "five-field"),
        (
            json!({"destroy": {"cron": "0 8 * * *", "time_zone": "Berlin"}}),
            "IANA time zone",
        ),
        (json!({"destroy": {"cron": "0 0 30 2 *"}}), "never fires"),
    ] {
        let error = kit
            .platform
            .create_environment(&kit.caller, body(schedules.clone()))
            .await
            .unwrap_err();
        assert!(error.to_string().contains(says), "{schedules}: {error}");
    }
}

#[tokio::test]
async fn a_time_to_live_ends_once_on_dynamodb() {
    let kit = Kit::on(Backend::Emulator, Settings::default()).await;
    let created = kit.environment_with("preview", json!({"ttl": "30m"})).await;
    kit.clock.advance(Duration::minutes(30));
    let (first, second) = tokio::join!(round(&kit), round(&kit));
    assert_eq!(first.queued + second.queued, 1, "{first:?} {second:?}");
    // The listing is DynamoDB's index, read eventually consistently.
    let listed = eventually("the destroy listed", || async {
        let listed = kit.deployments_of(&created.id).await;
        (!listed.is_empty())
            .then_some(listed)
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(round(&kit).await, SchedulerRound::default());
}
