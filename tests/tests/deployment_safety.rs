//! One deployment per environment at a time, in order; environments in parallel;
//! cancel; restart recovery; and sensitive values kept out of every log and store.

use chrono::{DateTime, Utc};
use envplane_e2e::{git_repository, spawn_app, GREETING_CONFIG};
use serde_json::{json, Value};

fn time(deployment: &Value, field: &str) -> DateTime<Utc> {
    let text = deployment[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing: {deployment}"));
    text.parse().unwrap()
}

const SLOW_FLOW: &str = "hooks:\n  before_plan: sleep 1\n";

#[tokio::test]
async fn one_environment_deploys_one_at_a_time_in_order() {
    let app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG), ("envplane.yml", SLOW_FLOW)]);
    let seeded = app.environment_on(&repository, "fifo", false).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.deploy(&seeded.environment_id, "apply").await);
    }
    let mut finished = Vec::new();
    for id in &ids {
        finished.push(app.wait_for(id, &["succeeded", "failed"]).await);
    }
    for (deployment, next) in finished.iter().zip(finished.iter().skip(1)) {
        assert_eq!(deployment["status"], "succeeded", "{deployment}");
        assert!(
            time(deployment, "finished_at") <= time(next, "started_at"),
            "deployments overlapped or ran out of order: {deployment} / {next}"
        );
    }
}

#[tokio::test]
async fn two_environments_deploy_in_parallel() {
    let app = spawn_app().await;
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: sleep 3\n"),
    ]);
    let first = app.environment_on(&repository, "left", false).await;
    let second = app.environment_on(&repository, "right", false).await;
    let a = app.deploy(&first.environment_id, "apply").await;
    let b = app.deploy(&second.environment_id, "apply").await;
    let a = app.wait_for(&a, &["succeeded", "failed"]).await;
    let b = app.wait_for(&b, &["succeeded", "failed"]).await;
    assert_eq!(
        (a["status"].clone(), b["status"].clone()),
        (json!("succeeded"), json!("succeeded"))
    );
    assert!(
        time(&a, "started_at") < time(&b, "finished_at")
            && time(&b, "started_at") < time(&a, "finished_at"),
        "the two environments did not overlap: {a} / {b}"
    );
}

#[tokio::test]
async fn cancelling_a_running_deployment_stops_its_sandbox_and_frees_the_environment() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: sleep 300\n"),
    ]);
    let seeded = app.environment_on(&repository, "cancel", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let next = app.deploy(&seeded.environment_id, "plan").await;
    app.wait_for_step(&id, "before_plan").await;
    let cancelling = app
        .post(&format!("/v1/deployments/{id}/cancel"), &key, json!({}))
        .await
        .expect(200);
    assert_eq!(cancelling["cancel_requested"], true);
    let cancelled = app
        .wait_for(&id, &["cancelled", "failed", "succeeded"])
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["reason"]
        .as_str()
        .unwrap()
        .starts_with("cancelled by"));
    // The next one starts: the environment lock was released. Cancel it while queued
    // or running, whichever it is by then.
    app.wait_for(&next, &["running"]).await;
    app.post(&format!("/v1/deployments/{next}/cancel"), &key, json!({}))
        .await
        .expect(200);
    app.wait_for(&next, &["cancelled"]).await;
    app.post(&format!("/v1/deployments/{next}/cancel"), &key, json!({}))
        .await
        .expect_error(409, "conflict");
}

const ECHO_FLOW: &str = "hooks:\n  before_plan: echo \"hook prints $TF_VAR_password and $API_TOKEN\"\n  after_apply: printf 'after %s\\n' \"$TF_VAR_password\"\n";

/// Outputs that carry the secret: one marked sensitive, one unwrapped with nonsensitive().
const LEAKY_CONFIG: &str = r#"
variable "password" {
  type      = string
  sensitive = true
}

output "password" {
  value     = var.password
  sensitive = true
}

output "connection" {
  value = nonsensitive("postgres://app:${var.password}@db:5432")
}
"#;

/// Everything readable under a directory, as one lossy string.
fn all_files(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text.push_str(&all_files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[tokio::test]
async fn sensitive_values_never_leave_the_sandbox_unmasked() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let password = "Zx9-sensitive-PASSWORD-value";
    let token = "tok_env_kind_SECRET_42";
    let repository = git_repository(&[("main.tf", LEAKY_CONFIG), ("envplane.yml", ECHO_FLOW)]);
    let seeded = app.environment_on(&repository, "masking", false).await;
    app.set_variable(
        &seeded.environment_id,
        "password",
        json!({"value": password, "sensitive": true}),
    )
    .await;
    app.set_variable(
        &seeded.environment_id,
        "API_TOKEN",
        json!({"value": token, "sensitive": true, "kind": "env"}),
    )
    .await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let deployment = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");

    let logs = app.logs(&id).await;
    assert!(logs.contains("hook prints *** and ***"), "{logs}");
    assert!(logs.contains("after ***"), "{logs}");
    assert!(
        logs.contains("connection = \"postgres://app:***@db:5432\""),
        "{logs}"
    );
    let environment = app
        .get(&format!("/v1/environments/{}", seeded.environment_id), &key)
        .await
        .expect(200);
    assert_eq!(
        environment["outputs"],
        json!({"password": null, "connection": "postgres://app:***@db:5432"})
    );

    let environment_path = format!("/v1/environments/{}", seeded.environment_id);
    let responses = [
        deployment.to_string(),
        logs.clone(),
        app.get(&environment_path, &key).await.text,
        app.get(
            &format!("{environment_path}/variables?effective=true"),
            &key,
        )
        .await
        .text,
        app.get(&format!("{environment_path}/state-versions"), &key)
            .await
            .text,
        app.get(&format!("{environment_path}/state-versions/1"), &key)
            .await
            .expect(200)
            .to_string(),
        app.get(&format!("{environment_path}/deployments"), &key)
            .await
            .text,
    ];
    for response in &responses {
        assert!(
            !response.contains(password) && !response.contains(token),
            "a secret leaked: {response}"
        );
    }
    // The stored files: SQLite (with its WAL), the sealed state and plan artifacts.
    let stored = all_files(app.data_dir.path());
    assert!(
        stored.contains("state_version"),
        "the database was not read"
    );
    assert!(
        !stored.contains(password) && !stored.contains(token),
        "a secret is stored in plaintext"
    );
}

#[tokio::test]
async fn a_restart_fails_what_was_running_and_runs_what_was_queued() {
    let mut app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: sleep 20\n"),
    ]);
    let seeded = app.environment_on(&repository, "restart", false).await;
    let running = app.deploy(&seeded.environment_id, "apply").await;
    app.wait_for(&running, &["running"]).await;
    let queued = app.deploy(&seeded.environment_id, "plan").await;

    app.restart().await;

    let failed = app
        .wait_for(&running, &["failed", "succeeded", "cancelled"])
        .await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("envplane restarted"),
        "{failed}"
    );
    // The queued one was not lost: it starts now, exactly once.
    let next = app
        .wait_for(&queued, &["running", "succeeded", "failed"])
        .await;
    assert_ne!(next["status"], "failed", "{next}");
    assert_eq!(next["attempt"], 1);
    app.post(&format!("/v1/deployments/{queued}/cancel"), &key, json!({}))
        .await
        .expect(200);
    let ended = app.wait_for(&queued, &["cancelled", "succeeded"]).await;
    assert_eq!(ended["attempt"], 1, "{ended}");
}

#[tokio::test]
async fn deployments_follow_tenancy_and_roles() {
    let app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "tenancy", false).await;
    let acme = app.organization("acme").await;
    let path = format!("/v1/environments/{}/deployments", seeded.environment_id);
    app.post(&path, &acme, json!({"action": "apply"}))
        .await
        .expect_error(404, "not_found");
    app.get(&path, &acme).await.expect_error(404, "not_found");
    let planner = app.key(&app.admin_key, "planner", None).await;
    app.post(&path, &planner, json!({"action": "apply"}))
        .await
        .expect_error(403, "forbidden");
    app.post(&path, &planner, json!({"action": "destroy"}))
        .await
        .expect_error(403, "forbidden");
    let plan = app
        .post(&path, &planner, json!({"action": "plan"}))
        .await
        .expect(202);
    let id = plan["id"].as_str().unwrap();
    app.get(&format!("/v1/deployments/{id}"), &acme)
        .await
        .expect_error(404, "not_found");
    app.post(&format!("/v1/deployments/{id}/cancel"), &acme, json!({}))
        .await
        .expect_error(404, "not_found");
    app.post(&path, &app.admin_key, json!({"action": "yolo"}))
        .await
        .expect_error(422, "validation_failed");
    app.wait_for(id, &["succeeded"]).await;
    app.post(
        &format!("/v1/deployments/{id}/approve"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect_error(409, "conflict");

    // Keys of people are not runner tokens, and the state backend takes runner tokens only.
    app.post("/v1/runner/session", &app.admin_key, json!({}))
        .await
        .expect_error(401, "unauthenticated");
    app.get(
        &format!("/v1/state/{}", seeded.environment_id),
        &app.admin_key,
    )
    .await
    .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_sandbox_killed_mid_run_fails_its_deployment_and_frees_the_environment() {
    let app = spawn_app().await;
    // The hook kills the runner itself, as an out-of-memory kill would.
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_apply: kill -KILL $PPID\n"),
    ]);
    let seeded = app.environment_on(&repository, "killed", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let next = app.deploy(&seeded.environment_id, "plan").await;
    let failed = app.wait_for(&id, &["failed", "succeeded"]).await;
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the sandbox stopped before reporting a result"),
        "{reason}"
    );
    let planned = app.wait_for(&next, &["succeeded", "failed"]).await;
    assert_eq!(
        planned["status"], "succeeded",
        "the state lock was left behind: {planned}"
    );
}
