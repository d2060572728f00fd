//! One scheduler round over ENVIRONMENTS environments of which DUE_PERCENT have a time
//! to live that ended (issue 14): its time and its store reads, which must follow the
//! due environments, not all of them. The platform runs in process on the SQLite store
//! behind a read-counting wrapper, with the test kit's clock (moved past the due ones'
//! end) and queue (which keeps the announcements); nothing dispatches.
//!
//! Usage: scheduler-tick [ENVIRONMENTS] [DUE_PERCENT]   (default 100000 1)

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Duration;
use envplane_bench::argument;
use envplane_core::ports::Unwired;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::{Ports, Settings};
use envplane_core::Platform;
use envplane_local::{FileKeyRing, SqliteStore};
use envplane_testkit::counting::CountingStore;
use envplane_testkit::faults::{FaultyQueue, ManualClock};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let environments = argument(1, 100_000)?;
    let due_percent = argument(2, 1)?;
    let data_dir = tempfile::tempdir()?;
    let store = Arc::new(CountingStore::new(Arc::new(SqliteStore::open(
        &data_dir.path().join("envplane.db"),
    )?)));
    let (clock, queue) = (
        Arc::new(ManualClock::default()),
        Arc::new(FaultyQueue::default()),
    );
    let ports = Ports {
        store: store.clone(),
        key_ring: Arc::new(FileKeyRing::open_or_create(
            &data_dir.path().join("master.key"),
        )?),
        clock: clock.clone(),
        queue: queue.clone(),
        launcher: Arc::new(Unwired),
        artifacts: Arc::new(Unwired),
        vcs: Arc::new(Unwired),
        reports: Arc::new(Unwired),
        notifier: Arc::new(Unwired),
        sender: Arc::new(Unwired),
        spend: Arc::new(Unwired),
    };
    let platform = Platform::new(ports, Settings::default());
    let key = platform.bootstrap().await?.context("a fresh store")?;
    let caller = platform.authenticate(key.expose_secret(), "bench").await?;
    let project = platform
        .create_project(&caller, serde_json::from_value(json!({"name": "bench"}))?)
        .await?;
    let template = platform
        .create_template(
            &caller,
            serde_json::from_value(json!({
                "name": "stack", "project_id": project.id,
                "repository": "https://github.com/acme/infra.git", "iac_version": "1.9.8",
            }))?,
        )
        .await?;

    let seeding = Instant::now();
    let every = 100 / due_percent.clamp(1, 100);
    for n in 0..environments {
        let ttl = if n % every == 0 { "30m" } else { "7d" };
        let body = json!({
            "name": format!("env-{n}"), "project_id": project.id,
            "template_id": template.id, "ttl": ttl,
        });
        platform
            .create_environment(&caller, serde_json::from_value(body)?)
            .await?;
    }
    let due = environments.div_ceil(every);
    println!(
        "seeded {environments} environments ({due} due) in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    clock.advance(Duration::minutes(31));
    let rounds = [
        "round with the due ones",
        "next round, none due",
        "another round, none due",
    ];
    for label in rounds {
        store.take();
        let started = Instant::now();
        let round = platform.run_scheduler().await?;
        let elapsed = started.elapsed();
        let reads = store.take();
        println!(
            "{label}: {:.1} ms, {} queued, {} store calls, {} records read",
            elapsed.as_secs_f64() * 1000.0,
            round.queued,
            reads.calls,
            reads.records,
        );
    }
    println!("announced: {}", queue.take().len());
    Ok(())
}
