//! The failover drill of docs/operations.md, on the emulator: two regions' functions
//! over one table (what a global table gives, minus its lag; the failover tool reads
//! the target region through a wrapper that adds lag), deployments running and queued
//! at the flip. Every one ends exactly once, the old region starts nothing after the
//! flip, the new one finishes what was queued, and failing back works the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_ecs::types::DesiredStatus;
use envplane_aws::dynamodb::DynamoDbStore;
use envplane_aws::emulator::create_queue;
use envplane_aws::reaper::{handle_schedule, DeadLetters};
use envplane_core::ports::{
    IndexQuery, Kind, ListQuery, Page, Record, Store, StoreError, SystemClock, WriteOp,
};
use envplane_core::region::{RegionName, SWITCH_CACHE};
use envplane_core::service::{fail_over, FlipError, FlipRequest, RegionStores};
use envplane_core::Platform;
use envplane_e2e::aws::{event_source_mapping, spawn_app_on_aws_in, tasks, Harness, Sandbox};
use envplane_e2e::kit::regions;
use envplane_e2e::{eventually, git_repository, GREETING_CONFIG};
use serde_json::Value;
use tokio::task::JoinHandle;

/// How late the target region reads what the active region wrote.
const REPLICATION_LAG: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_and_back_loses_nothing_and_runs_nothing_twice() {
    let (west, central) = (region("eu-west-1"), region("eu-central-1"));
    // The home region's deployer is fed by a stand-in of this test's, which the drill
    // stops at the flip, as the disaster (or `active = false`) would.
    let only_fargate = Harness {
        event_source_mapping: false,
        fargate: Some(Sandbox::RunRunner),
    };
    let aws =
        spawn_app_on_aws_in(only_fargate, None, Some(regions("eu-west-1", SWITCH_CACHE))).await;
    let feeding_west = Arc::new(AtomicBool::new(true));
    let _west_mapping = Guard(event_source_mapping(
        &aws.stack.settings,
        &aws.stack.sdk,
        feeding_west.clone(),
    ));
    let _west_reaper = reaper_every_second(
        envplane_aws::config::reaper_platform(&aws.stack.settings, &aws.stack.sdk).platform,
        DeadLetters::new(aws.sqs.clone(), &aws.stack.dead_letter_queue_url),
    );
    let second = aws
        .second_region(Harness::FULL, regions("eu-central-1", SWITCH_CACHE))
        .await;
    let central_dead_letters = create_queue(&aws.sqs, "envplane-deployments-dlq-b").await;
    let _central_reaper = reaper_every_second(
        second.reaper.clone(),
        DeadLetters::new(aws.sqs.clone(), central_dead_letters),
    );
    let app = &aws.app;

    // Running at the flip: a deployment whose plan waits 8 s in a hook. Queued at the
    // flip: the next one of its environment, behind its lock, and one of another
    // environment whose message the home region's deployer never read.
    let slow = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: sleep 8\n"),
    ]);
    let fast = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let busy = aws
        .environment_on(&slow, "busy", false)
        .await
        .environment_id;
    let quiet = aws
        .environment_on(&fast, "quiet", false)
        .await
        .environment_id;
    let running = app.deploy(&busy, "apply").await;
    app.wait_for_step(&running, "before_plan").await;
    let behind = app.deploy(&busy, "apply").await;
    feeding_west.store(false, Ordering::SeqCst);
    let unread = app.deploy(&quiet, "apply").await;

    let table = &aws.stack.settings.table_name;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws.stack.sdk);
    let replication = Replication::default();
    let active_replica = Written {
        inner: DynamoDbStore::new(dynamodb.clone(), table),
        replication: replication.clone(),
    };
    let target_replica = Lagging {
        inner: DynamoDbStore::new(dynamodb.clone(), table),
        replication: replication.clone(),
    };
    let request = |to: &RegionName, max_lag: Duration| FlipRequest {
        to: to.clone(),
        home: west.clone(),
        max_lag,
        force: false,
        by: "drill".into(),
    };
    let stores = || RegionStores {
        active: Some(&active_replica as &dyn Store),
        target: &target_replica,
    };

    // A lag above the bound refuses the flip.
    let refused = fail_over(
        stores(),
        &request(&central, Duration::from_millis(200)),
        &SystemClock,
    )
    .await;
    assert!(matches!(refused, Err(FlipError::Refused(_))), "{refused:?}");

    let flipped_at = Instant::now();
    let flip = fail_over(
        stores(),
        &request(&central, Duration::from_secs(5)),
        &SystemClock,
    )
    .await
    .unwrap();
    aws.dns.point_to(second.api.clone());
    feeding_west.store(true, Ordering::SeqCst);
    assert_eq!(
        (flip.active.region.as_str(), flip.active.epoch),
        ("eu-central-1", 1)
    );

    // RTO: from the flip to the first deployment the new region dispatches.
    eventually(
        "the unread deployment dispatched in eu-central-1",
        || async {
            let deployment = app
                .get(&format!("/v1/deployments/{unread}"), &app.admin_key)
                .await
                .expect(200);
            (deployment["region"] == "eu-central-1")
                .then_some(())
                .ok_or_else(|| deployment["status"].to_string())
        },
    )
    .await;
    let rto = flipped_at.elapsed();

    for id in [&running, &behind, &unread] {
        app.wait_for(id, &["succeeded", "failed", "cancelled"])
            .await;
    }
    let ended = |id: String| async move {
        let deployment: Value = app
            .get(&format!("/v1/deployments/{id}"), &app.admin_key)
            .await
            .expect(200);
        (
            deployment["status"].as_str().unwrap().to_string(),
            deployment["region"].as_str().unwrap().to_string(),
            deployment["epoch"].as_u64().unwrap(),
            deployment["attempt"].as_u64().unwrap(),
        )
    };
    let succeeded =
        |region: &str, epoch: u64| ("succeeded".to_string(), region.to_string(), epoch, 1);
    assert_eq!(
        ended(running.clone()).await,
        succeeded("eu-west-1", 0),
        "it ran on, reporting to the new region"
    );
    assert_eq!(ended(behind.clone()).await, succeeded("eu-central-1", 1));
    assert_eq!(ended(unread.clone()).await, succeeded("eu-central-1", 1));
    // The old region started nothing after the flip (its deployer was fed again, and
    // refused); the new one started each queued deployment once.
    let started = |cluster: String| {
        let ecs = aws.ecs.clone();
        async move {
            let mut started = Vec::new();
            for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
                for task in tasks(&ecs, &cluster, desired).await {
                    started.push(task.started_by().unwrap_or_default().to_string());
                }
            }
            started.sort();
            started
        }
    };
    assert_eq!(
        started(aws.stack.settings.ecs_cluster.clone()).await,
        vec![format!("{running}.1")]
    );
    let mut in_central = vec![format!("{behind}.1"), format!("{unread}.1")];
    in_central.sort();
    assert_eq!(
        started(second.settings.ecs_cluster.clone()).await,
        in_central
    );

    // Passive now: the home region's api refuses writes and its health check fails.
    let west_api = envplane_aws::config::platform(&aws.stack.settings, &aws.stack.sdk).platform;
    let west_router = envplane_http::api_router(west_api.clone());
    let call = |method: &str, path: &str| {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", app.admin_key))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"name": "late"}"#))
            .unwrap();
        tower::ServiceExt::oneshot(west_router.clone(), request)
    };
    let refused = call("POST", "/v1/projects").await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(call("GET", "/health").await.unwrap().status(), 503);
    assert_eq!(
        call("GET", "/v1/projects").await.unwrap().status(),
        200,
        "reads are served"
    );

    // Fail back: the same procedure the other way.
    let back_stores = RegionStores {
        active: Some(&target_replica as &dyn Store),
        target: &active_replica,
    };
    let flip_back = fail_over(
        back_stores,
        &request(&west, Duration::from_secs(5)),
        &SystemClock,
    )
    .await
    .unwrap();
    assert_eq!(
        (flip_back.active.region.as_str(), flip_back.active.epoch),
        ("eu-west-1", 2)
    );
    aws.dns.point_to(west_api);
    // A client retries the 503 until the api has read the flip back (within
    // SWITCH_CACHE).
    let after = eventually("the home region accepting writes again", || async {
        let reply = app
            .post(
                &format!("/v1/environments/{quiet}/deployments"),
                &app.admin_key,
                serde_json::json!({"action": "apply"}),
            )
            .await;
        match reply.status.as_u16() {
            202 => Ok(reply.body["id"].as_str().unwrap().to_string()),
            _ => Err(reply.text),
        }
    })
    .await;
    app.wait_for(&after, &["succeeded", "failed"]).await;
    assert_eq!(ended(after.clone()).await, succeeded("eu-west-1", 2));
    assert_eq!(
        started(second.settings.ecs_cluster.clone()).await,
        in_central,
        "nothing more in eu-central-1"
    );

    eprintln!(
        "failover drill: replication lag measured {:?}, flip seen by the target after {:?}, RTO (flip to first dispatch in the new region) {rto:?}",
        flip.lag, flip.seen_by_target_after
    );
}

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

/// The reaper's EventBridge schedule, every second instead of every minute.
fn reaper_every_second(platform: Arc<Platform>, dead_letters: DeadLetters) -> Guard {
    Guard(tokio::spawn(async move {
        loop {
            let tick = EventBridgeEvent::<serde_json::Value>::default();
            if let Err(error) = handle_schedule(&platform, &dead_letters, tick).await {
                eprintln!("reaper stand-in: {error}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

/// Stops its stand-in when dropped.
struct Guard(JoinHandle<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Key = (Kind, String, String);

/// What was written through the active region's replica, and when: the target's
/// replica reads each such record as it was before for [`REPLICATION_LAG`].
#[derive(Clone, Default)]
struct Replication(Arc<Mutex<HashMap<Key, Replaced>>>);

/// When a record was written, and what it was before.
type Replaced = (Instant, Option<Record>);

fn key_of(op: &WriteOp) -> Key {
    match op {
        WriteOp::Insert(record) | WriteOp::Replace { record, .. } => {
            (record.kind, record.org_id.clone(), record.id.clone())
        }
        WriteOp::Delete {
            kind, org_id, id, ..
        }
        | WriteOp::Check {
            kind, org_id, id, ..
        } => (*kind, org_id.clone(), id.clone()),
    }
}

/// The active region's replica: remembers what each write replaced.
struct Written {
    inner: DynamoDbStore,
    replication: Replication,
}

/// The target region's replica: reads late.
struct Lagging {
    inner: DynamoDbStore,
    replication: Replication,
}

#[async_trait]
impl Store for Written {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(kind, org_id, id).await
    }
    async fn find_unique(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.find_unique(kind, key).await
    }
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        self.inner.list_indexed(query).await
    }
    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let mut before = Vec::new();
        for op in ops.iter().filter(|op| !matches!(op, WriteOp::Check { .. })) {
            let key = key_of(op);
            let current = self.inner.get(key.0, &key.1, &key.2).await?;
            before.push((key, current));
        }
        self.inner.commit(ops).await?;
        let mut written = self.replication.0.lock().unwrap();
        for (key, previous) in before {
            written.insert(key, (Instant::now(), previous));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Lagging {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let key = (kind, org_id.to_string(), id.to_string());
        let late = self.replication.0.lock().unwrap().get(&key).cloned();
        match late {
            Some((at, previous)) if at.elapsed() < REPLICATION_LAG => Ok(previous),
            _ => self.inner.get(kind, org_id, id).await,
        }
    }
    async fn find_unique(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.find_unique(kind, key).await
    }
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        self.inner.list_indexed(query).await
    }
    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.commit(ops).await
    }
}
