//! The active-region switch in process: two regions' platforms over one store. A
//! region that lost the switch starts and ends nothing even while it still believes it
//! is active (its read of the switch is stale): the fence on the epoch refuses its
//! writes. The new active region ends what runs and adopts what was queued, once.

use std::time::Duration;

use envplane_core::deployment::{DeploymentStatus, PhaseReport, PhaseResult};
use envplane_core::ports::{StoreError, SystemClock};
use envplane_core::region::RegionName;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::{
    fail_over, DispatchOutcome, FlipRequest, RegionStores, Settings, TokenScope,
};
use envplane_core::Error;
use envplane_e2e::kit::{regions, Kit};

fn succeeded() -> PhaseReport {
    PhaseReport {
        result: PhaseResult::Succeeded,
        reason: None,
        plan_summary: None,
        commit: None,
        outputs: None,
    }
}

fn fenced<T: std::fmt::Debug>(result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::Store(StoreError::CheckFailed))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_region_that_lost_the_switch_starts_and_ends_nothing() {
    // The home region trusts its read of the switch for an hour: stale after the flip.
    let kit = Kit::with_settings(Settings {
        regions: Some(regions("eu-west-1", Duration::from_secs(3600))),
        ..Settings::default()
    })
    .await;
    let central = kit.region(regions("eu-central-1", Duration::ZERO));
    let (busy, quiet) = (
        kit.environment("busy").await,
        kit.environment("quiet").await,
    );
    let running = kit.deploy(&busy).await;
    assert!(matches!(
        kit.deliver().await[..],
        [DispatchOutcome::Launched { .. }]
    ));
    let runner = kit.start_runner(&running).await;
    let queued = kit.deploy(&quiet).await;
    let message = kit.queue.take().pop().unwrap();
    assert_eq!(
        central.platform.dispatch(&message).await.unwrap(),
        DispatchOutcome::Passive
    );

    let to = RegionName::parse("eu-central-1").unwrap();
    let request = FlipRequest {
        to,
        home: RegionName::parse("eu-west-1").unwrap(),
        max_lag: Duration::from_secs(5),
        force: false,
        by: "test".into(),
    };
    let store = kit.store.as_ref();
    let stores = RegionStores {
        active: Some(store),
        target: store,
    };
    let flip = fail_over(stores, &request, &SystemClock).await.unwrap();
    assert_eq!(flip.active.epoch, 1);

    // Still believing it acts, the home region can neither queue, start nor end a
    // deployment; a dispatch it loses so is handed back, a sandbox's stop left alone.
    assert_eq!(
        kit.platform.dispatch(&message).await.unwrap(),
        DispatchOutcome::Passive
    );
    fenced(kit.platform.finish_phase(&runner, succeeded()).await);
    let attempt = kit.deployment(&running).await.attempt;
    kit.platform
        .sandbox_stopped(&kit.caller.org_id, &running, attempt, "exit code 137")
        .await
        .unwrap();
    let plan = envplane_e2e::kit::from(serde_json::json!({"action": "plan"}));
    fenced(
        kit.platform
            .create_deployment(&kit.caller, &quiet, plan)
            .await,
    );
    assert_eq!(kit.deployments_of(&quiet).await.len(), 1);
    assert_eq!(
        kit.deployment(&queued).await.status,
        DeploymentStatus::Queued
    );
    assert_eq!(
        kit.deployment(&running).await.status,
        DeploymentStatus::Running
    );
    assert!(kit.launcher.launch_token(&queued).is_none());

    // The runner reports to the new active region, which ends its deployment once.
    let ended = central
        .platform
        .finish_phase(&runner, succeeded())
        .await
        .unwrap();
    assert_eq!(ended.status, DeploymentStatus::Succeeded);
    assert_eq!(
        (ended.region.unwrap().as_str(), ended.epoch),
        ("eu-west-1", Some(0))
    );
    // Its watchdog adopts the queued deployment, once per flip.
    assert_eq!(central.platform.run_watchdog().await.unwrap().adopted, 1);
    assert_eq!(central.platform.run_watchdog().await.unwrap().adopted, 0);
    for message in central.queue.take() {
        central.platform.dispatch(&message).await.unwrap();
    }
    let started = kit.deployment(&queued).await;
    assert_eq!(started.status, DeploymentStatus::Running);
    assert_eq!(
        (started.region.unwrap().as_str(), started.epoch),
        ("eu-central-1", Some(1))
    );
    assert!(central.launcher.launch_token(&queued).is_some());

    // A second flip to the region already active is refused.
    let again = fail_over(stores, &request, &SystemClock).await;
    assert!(again.is_err(), "{again:?}");
}

/// After a failover, the table may name a state version whose object the bucket's
/// replication has not brought yet. Terraform reads a 404 as "no state" and would plan
/// to create everything again: the state backend answers 503, never an empty state.
#[tokio::test]
async fn a_state_whose_object_is_missing_is_unavailable_never_empty() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    kit.deliver().await;
    let token = kit.launcher.launch_token(&id).unwrap();
    let launch = kit
        .platform
        .authenticate_runner(token.expose_secret(), &[TokenScope::Launch])
        .await
        .unwrap();
    let session = kit.platform.start_session(&launch).await.unwrap();
    let state = kit
        .platform
        .authenticate_runner(&session.state_token, &[TokenScope::State])
        .await
        .unwrap();
    let body = serde_json::json!({"version": 4, "serial": 1, "lineage": "replicated"});
    kit.platform
        .write_state(&state, &environment, None, body.to_string().into_bytes())
        .await
        .unwrap();
    assert!(kit
        .platform
        .read_state(&state, &environment)
        .await
        .unwrap()
        .is_some());

    std::fs::remove_dir_all(kit.artifacts_dir()).unwrap();
    let missing = kit.platform.read_state(&state, &environment).await;
    assert!(matches!(missing, Err(Error::Unavailable(_))), "{missing:?}");
}
