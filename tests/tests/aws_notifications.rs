//! Notifications on the AWS adapters, against the emulator: a plan that ends through SQS,
//! the deployer and the Fargate stand-in queues its notification on the reports queue;
//! λ reporter's handler delivers it to a target on loopback that fails the first time,
//! and the retry comes back through the queue, delayed, and lands.

use std::time::Duration;

use envplane_core::github::signature_matches;
use envplane_e2e::aws::{spawn_app_on_aws_with_github, Harness};
use envplane_e2e::{eventually, git_repository, notification_target, GREETING_CONFIG};
use envplane_testkit::github::FakeGitHub;
use serde_json::json;

#[tokio::test]
async fn a_notification_goes_through_the_reports_queue_and_its_retry_comes_back_delayed() {
    // The fake GitHub only gives the stack its reports queue; nothing here calls it.
    let github = FakeGitHub::start().await;
    let aws = spawn_app_on_aws_with_github(Harness::FULL, Some(&github.url)).await;
    let app = &aws.app;
    let (url, received) = notification_target(vec![503], Duration::ZERO).await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "staging", false).await;
    let target = json!({
        "project_id": seeded.project_id, "name": "ops", "kind": "webhook", "url": url,
        "events": ["deployment.succeeded"],
    });
    let created = app
        .post("/v1/notification-targets", &app.admin_key, target)
        .await
        .expect(201);
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = app.deploy(&seeded.environment_id, "plan").await;
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // λ reporter, as the SQS event source mapping runs it.
    let settings = &aws.stack.settings;
    let reporter = envplane_aws::config::platform(settings, &aws.stack.sdk);
    eventually("the notification, on its second try", || async {
        aws.run_reporter_once(&reporter.platform).await?;
        let calls = received.lock().unwrap().len();
        (calls >= 2)
            .then_some(())
            .ok_or_else(|| format!("{calls} calls"))
    })
    .await;
    let (signature, body) = received.lock().unwrap()[1].clone();
    assert!(signature_matches(
        secret.as_bytes(),
        &body,
        signature.as_deref()
    ));
    let notification: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notification["event"], "deployment.succeeded");
    assert_eq!(notification["deployment_id"], id);
}
