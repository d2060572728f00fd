//! Deployments that really run: real Terraform 1.0.3 in sandboxes, against Git
//! repositories made by the tests.

use envplane_e2e::{git_repository, repositories_dir, spawn_app, GREETING_CONFIG};
use serde_json::json;

fn step_names(deployment: &serde_json::Value) -> Vec<String> {
    deployment["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            format!(
                "{}:{}",
                step["name"].as_str().unwrap(),
                step["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_plan_changes_nothing() {
    let app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "plan", false).await;
    let id = app.deploy(&seeded.environment_id, "plan").await;
    let deployment = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    assert_eq!(
        step_names(&deployment),
        ["clone:succeeded", "init:succeeded", "plan:succeeded"]
    );
    assert_eq!(deployment["plan_summary"]["outputs_changed"], true);
    assert_eq!(deployment["commit"].as_str().unwrap().len(), 40);
    let logs = app.logs(&id).await;
    assert!(logs.contains("message  = \"hello world\""), "{logs}");
    let versions = app
        .get(
            &format!("/v1/environments/{}/state-versions", seeded.environment_id),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(versions["items"], json!([]));
    let environment = app
        .get(
            &format!("/v1/environments/{}", seeded.environment_id),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert!(environment["outputs"].is_null());
}

#[tokio::test]
async fn a_plan_can_be_read_without_its_sensitive_values() {
    let app = spawn_app().await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "read-plan", false).await;
    let secret = "hunter2-plan-secret";
    app.put(
        &format!(
            "/v1/environments/{}/variables/password",
            seeded.environment_id
        ),
        &app.admin_key,
        json!({"value": secret, "sensitive": true}),
    )
    .await
    .expect(201);
    app.put(
        &format!(
            "/v1/environments/{}/variables/greeting",
            seeded.environment_id
        ),
        &app.admin_key,
        json!({"value": format!("hi {secret}")}),
    )
    .await
    .expect(201);
    let id = app.deploy(&seeded.environment_id, "plan").await;
    let deployment = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");

    let viewer = app.key(&app.admin_key, "viewer", None).await;
    let plan = app
        .get(&format!("/v1/deployments/{id}/plan"), &viewer)
        .await
        .expect(200);
    assert_eq!(plan["deployment_id"], id.as_str());
    assert_eq!(plan["plan_summary"], deployment["plan_summary"]);
    let text = plan["text"].as_str().unwrap();
    assert!(text.contains("message"), "{text}");
    assert!(text.contains("(sensitive value)"), "{text}");
    let outputs = &plan["json"]["output_changes"];
    assert_eq!(outputs["message"]["after"], "hi *** world", "{plan}");
    assert_eq!(outputs["password"]["after"], "(sensitive value)", "{plan}");
    assert_eq!(
        plan["json"]["variables"]["password"]["value"],
        "(sensitive value)"
    );
    assert!(!plan.to_string().contains(secret), "{plan}");

    let other = app.organization("plan-readers").await;
    app.get(&format!("/v1/deployments/{id}/plan"), &other)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn apply_keeps_state_across_sandboxes_and_destroy_empties_it() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "apply", false).await;
    let environment_path = format!("/v1/environments/{}", seeded.environment_id);

    let first = app.deploy(&seeded.environment_id, "apply").await;
    let deployment = app.wait_for(&first, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    assert_eq!(
        step_names(&deployment),
        [
            "clone:succeeded",
            "init:succeeded",
            "plan:succeeded",
            "apply:succeeded",
            "outputs:succeeded"
        ]
    );
    let environment = app.get(&environment_path, &key).await.expect(200);
    assert_eq!(
        environment["outputs"],
        json!({"message": "hello world", "password": null})
    );

    // A second sandbox reads the state the first one saved: only the change is planned.
    app.set_variable(
        &seeded.environment_id,
        "greeting",
        json!({"value": "goodbye"}),
    )
    .await;
    let second = app.deploy(&seeded.environment_id, "apply").await;
    app.wait_for(&second, &["succeeded"]).await;
    let logs = app.logs(&second).await;
    assert!(
        logs.contains("~ message = \"hello world\" -> \"goodbye world\""),
        "{logs}"
    );
    let environment = app.get(&environment_path, &key).await.expect(200);
    assert_eq!(environment["outputs"]["message"], "goodbye world");

    let versions = app
        .get(&format!("{environment_path}/state-versions"), &key)
        .await
        .expect(200);
    let versions = versions["items"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["deployment_id"], second.as_str());
    let state = app
        .get(&format!("{environment_path}/state-versions/1"), &key)
        .await
        .expect(200);
    assert_eq!(state["outputs"]["message"]["value"], "hello world");
    app.get(&format!("{environment_path}/state-versions/9"), &key)
        .await
        .expect_error(404, "not_found");

    let destroy = app.deploy(&seeded.environment_id, "destroy").await;
    let deployment = app.wait_for(&destroy, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    assert!(step_names(&deployment).contains(&"destroy:succeeded".to_string()));
    let environment = app.get(&environment_path, &key).await.expect(200);
    assert_eq!(environment["outputs"], json!({}));
    let history = app
        .get(&format!("{environment_path}/deployments"), &key)
        .await
        .expect(200);
    let ids: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [destroy, second, first]);
}

/// An approval is a second pair of eyes: the requester cannot give it, and only an
/// admin can change that or switch approvals off.
#[tokio::test]
async fn the_requester_cannot_approve_its_own_deployment() {
    let app = spawn_app().await;
    let admin = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "four-eyes", true).await;
    let environment = format!("/v1/environments/{}", seeded.environment_id);
    let deployer = app.key(&admin, "deployer", None).await;
    for change in [
        json!({"allow_self_approval": false}),
        json!({"requires_approval": false}),
    ] {
        app.patch(&environment, &deployer, change)
            .await
            .expect_error(403, "forbidden");
    }
    // Sending the current value is no change: a deployer may.
    app.patch(&environment, &deployer, json!({"requires_approval": true}))
        .await
        .expect(200);
    app.patch(&environment, &admin, json!({"allow_self_approval": false}))
        .await
        .expect(200);

    let id = app.deploy(&seeded.environment_id, "apply").await;
    app.wait_for(&id, &["waiting_for_approval"]).await;
    let message = app
        .post(&format!("/v1/deployments/{id}/approve"), &admin, json!({}))
        .await
        .expect_error(403, "forbidden");
    assert!(message.contains("requested"), "{message}");
    let approved = app
        .post(
            &format!("/v1/deployments/{id}/approve"),
            &deployer,
            json!({}),
        )
        .await
        .expect(200);
    assert_ne!(approved["approved_by"], approved["requested_by"]);
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn an_approved_apply_runs_exactly_the_saved_plan() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "approval", true).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let waiting = app.wait_for(&id, &["waiting_for_approval", "failed"]).await;
    assert_eq!(waiting["status"], "waiting_for_approval", "{waiting}");
    assert_eq!(waiting["plan_summary"]["outputs_changed"], true);
    assert!(!step_names(&waiting)
        .iter()
        .any(|step| step.starts_with("apply")));

    // The variable changes after the plan: the approved apply still applies the plan.
    app.set_variable(
        &seeded.environment_id,
        "greeting",
        json!({"value": "changed"}),
    )
    .await;
    let viewer = app.key(&key, "planner", None).await;
    app.post(&format!("/v1/deployments/{id}/approve"), &viewer, json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(&format!("/v1/deployments/{id}/approve"), &key, json!({}))
        .await
        .expect(200);
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2);
    assert!(done["approved_by"].is_string());
    assert!(step_names(&done).contains(&"apply:succeeded".to_string()));
    // One log across both sandboxes: the plan, then the approved apply.
    let logs = app.logs(&id).await;
    let (plan, apply) = (
        logs.find("Changes to Outputs").unwrap(),
        logs.find("Apply complete!").unwrap(),
    );
    assert!(plan < apply, "{logs}");
    let environment = app
        .get(&format!("/v1/environments/{}", seeded.environment_id), &key)
        .await
        .expect(200);
    assert_eq!(environment["outputs"]["message"], "hello world");

    app.post(&format!("/v1/deployments/{id}/approve"), &key, json!({}))
        .await
        .expect_error(409, "conflict");
    app.post(&format!("/v1/deployments/{id}/reject"), &key, json!({}))
        .await
        .expect_error(409, "conflict");
}

/// The environment stays held while a plan waits for approval, so nothing can change
/// its state under the saved plan (which Terraform would refuse as stale).
#[tokio::test]
async fn a_plan_waiting_for_approval_holds_the_environment() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "held", true).await;
    let first = app.deploy(&seeded.environment_id, "apply").await;
    app.wait_for(&first, &["waiting_for_approval"]).await;
    let second = app.deploy(&seeded.environment_id, "plan").await;
    // The dispatcher has seen the second deployment and decided: it must wait.
    app.wait_until_dispatched().await;
    let waiting = app
        .get(&format!("/v1/deployments/{second}"), &key)
        .await
        .expect(200);
    assert_eq!(waiting["status"], "queued", "{waiting}");
    app.post(&format!("/v1/deployments/{first}/approve"), &key, json!({}))
        .await
        .expect(200);
    app.wait_for(&first, &["succeeded"]).await;
    let planned = app.wait_for(&second, &["succeeded", "failed"]).await;
    assert_eq!(planned["status"], "succeeded", "{planned}");
    // The plan after the apply sees the applied state: nothing left to change.
    assert_eq!(
        planned["plan_summary"]["outputs_changed"], false,
        "{planned}"
    );
}

#[tokio::test]
async fn a_rejected_plan_frees_the_environment() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = app.environment_on(&repository, "reject", true).await;
    let first = app.deploy(&seeded.environment_id, "apply").await;
    app.wait_for(&first, &["waiting_for_approval"]).await;
    let second = app.deploy(&seeded.environment_id, "plan").await;
    let rejected = app
        .post(&format!("/v1/deployments/{first}/reject"), &key, json!({}))
        .await
        .expect(200);
    assert_eq!(rejected["status"], "rejected");
    assert!(rejected["reason"]
        .as_str()
        .unwrap()
        .starts_with("rejected by"));
    let next = app.wait_for(&second, &["succeeded", "failed"]).await;
    assert_eq!(next["status"], "succeeded", "{next}");
    let versions = app
        .get(
            &format!("/v1/environments/{}/state-versions", seeded.environment_id),
            &key,
        )
        .await
        .expect(200);
    assert_eq!(
        versions["items"],
        json!([]),
        "a rejected plan must not change state"
    );
}

#[tokio::test]
async fn hooks_run_as_their_own_steps_and_a_failing_one_fails_the_deployment() {
    let app = spawn_app().await;
    let flow = "hooks:\n  before_init: echo before-init-ran\n  after_plan:\n    - echo after-plan-ran\n    - echo second-command\n  after_apply: echo applied > /dev/null\n";
    let repository = git_repository(&[("main.tf", GREETING_CONFIG), ("envplane.yml", flow)]);
    let seeded = app.environment_on(&repository, "hooks", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let deployment = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    assert_eq!(
        step_names(&deployment),
        [
            "clone:succeeded",
            "before_init:succeeded",
            "init:succeeded",
            "plan:succeeded",
            "after_plan:succeeded",
            "apply:succeeded",
            "after_apply:succeeded",
            "outputs:succeeded"
        ]
    );
    let logs = app.logs(&id).await;
    assert!(
        logs.contains("before-init-ran") && logs.contains("second-command"),
        "{logs}"
    );

    let failing = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        (
            "envplane.yml",
            "hooks:\n  before_plan:\n    - echo checking\n    - exit 3\n    - echo never-printed\n",
        ),
    ]);
    let seeded = app.environment_on(&failing, "failing-hook", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let failed = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["reason"],
        "the before_plan hook failed: `exit 3` exited with code 3"
    );
    assert_eq!(step_names(&failed).last().unwrap(), "before_plan:failed");
    assert!(!app.logs(&id).await.contains("never-printed"));
    // The environment is free again.
    let next = app.deploy(&seeded.environment_id, "plan").await;
    app.wait_for(&next, &["failed"]).await;
}

#[tokio::test]
async fn every_kind_of_broken_input_fails_with_its_reason() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let good = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let missing = format!("file://{}/nonexistent", repositories_dir().display());
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("no-repo", json!({"repository": missing}), "cannot be read"),
        (
            "no-revision",
            json!({"revision": "no-such-branch"}),
            "the revision \"no-such-branch\" does not exist",
        ),
        (
            "no-path",
            json!({"path": "missing/dir"}),
            "the path \"missing/dir\" does not exist",
        ),
        (
            "no-version",
            json!({"iac_version": "9.9.9"}),
            "Terraform 9.9.9 is not available",
        ),
    ];
    for (name, change, expected) in cases {
        let seeded = app.environment_on(&good, name, false).await;
        app.patch(
            &format!("/v1/templates/{}", seeded.template_id),
            &key,
            change,
        )
        .await
        .expect(200);
        let id = app.deploy(&seeded.environment_id, "apply").await;
        let failed = app.wait_for(&id, &["succeeded", "failed"]).await;
        assert_eq!(failed["status"], "failed", "{name}");
        let reason = failed["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{name}: {reason}");
    }

    let broken = git_repository(&[("main.tf", "output \"x\" {\n  value = \n}\n")]);
    let seeded = app.environment_on(&broken, "syntax", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let failed = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the init step failed") || reason.starts_with("the plan step failed"),
        "{reason}"
    );
    assert!(reason.contains("Error:"), "{reason}");
}

#[tokio::test]
async fn a_state_larger_than_an_api_request_is_saved() {
    let app = spawn_app().await;
    // A 1.5 MB sensitive output: the state Terraform posts is over the API's 1 MiB limit.
    let repository = git_repository(&[(
        "main.tf",
        "output \"padding\" {\n  value     = format(\"%01500000d\", 7)\n  sensitive = true\n}\n",
    )]);
    let seeded = app.environment_on(&repository, "large-state", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let deployment = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    let versions = app
        .get(
            &format!("/v1/environments/{}/state-versions", seeded.environment_id),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(versions["items"].as_array().unwrap().len(), 1, "{versions}");
}
