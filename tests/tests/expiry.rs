//! An environment whose time to live ends is destroyed by real Terraform, once, also
//! when envplane restarts around the moment it ends.

use chrono::{Duration, Utc};
use envplane_e2e::{eventually, git_repository, spawn_app, TestApp, GREETING_CONFIG};
use serde_json::{json, Value};

async fn deployments(app: &TestApp, environment_id: &str) -> Vec<Value> {
    let path = format!("/v1/environments/{environment_id}/deployments");
    let listing = app.get(&path, &app.admin_key).await.expect(200);
    listing["items"].as_array().unwrap().clone()
}

/// Ends the environment's time to live `seconds` from now.
async fn expire_in(app: &TestApp, environment_id: &str, seconds: i64) {
    let at = Utc::now() + Duration::seconds(seconds);
    let path = format!("/v1/environments/{environment_id}/ttl");
    let environment = app
        .post(&path, &app.admin_key, json!({"expires_at": at}))
        .await
        .expect(200);
    assert!(environment["expires_at"].is_string(), "{environment}");
}

/// Waits for the environment's scheduled destroy to end, and answers it.
async fn scheduled_destroy(app: &TestApp, environment_id: &str) -> Value {
    let destroy = eventually("the time to live's destroy", || async {
        let all = deployments(app, environment_id).await;
        all.iter()
            .find(|d| d["action"] == "destroy")
            .cloned()
            .ok_or_else(|| format!("{all:?}"))
    })
    .await;
    let id = destroy["id"].as_str().unwrap();
    app.wait_for(id, &["succeeded", "failed", "cancelled"])
        .await
}

#[tokio::test]
async fn an_environment_whose_time_to_live_ends_is_destroyed_once_across_restarts() {
    let mut app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let applied = app.environment_on(&repository, "preview", false).await;
    let apply = app.deploy(&applied.environment_id, "apply").await;
    let done = app.wait_for(&apply, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // It ends while envplane restarts.
    expire_in(&app, &applied.environment_id, 2).await;
    app.restart().await;
    let destroy = scheduled_destroy(&app, &applied.environment_id).await;
    assert_eq!(destroy["status"], "succeeded", "{destroy}");
    assert_eq!(destroy["requested_by"], "scheduler:ttl");
    assert_eq!(destroy["trigger"]["kind"], "schedule");
    let environment = app
        .get(
            &format!("/v1/environments/{}", applied.environment_id),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(environment["expires_at"], Value::Null);

    // After another restart, a second environment's end shows the scheduler ran
    // again: the first is not destroyed a second time.
    app.restart().await;
    let marker = app.environment_on(&repository, "marker", false).await;
    expire_in(&app, &marker.environment_id, 1).await;
    scheduled_destroy(&app, &marker.environment_id).await;
    let all = deployments(&app, &applied.environment_id).await;
    let actions: Vec<_> = all.iter().map(|d| d["action"].clone()).collect();
    assert_eq!(actions, [json!("destroy"), json!("apply")]);
}
