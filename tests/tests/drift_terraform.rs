//! Drift and costs of real resources, with real Terraform 1.0.3: the tests' provider
//! `testcloud` (tests/testcloud) keeps its resources as JSON files in a directory of
//! the test's; Terraform installs it offline from the tools directory's provider
//! mirror. The test applies, changes the cloud behind Terraform's back, and sees the
//! drift calendar find it, tell it, remediate it once and tell that too; the plans are
//! priced with testcloud's types mapped onto the catalog's.
//!
//! The sandbox cannot see the test's cloud directory (it sees nothing of the host but
//! the system directories), so this installation runs deployments unsandboxed
//! (`Isolation::Unsafe`, serve's `--unsafe-no-sandbox`): it tests drift, not isolation,
//! which tests/tests/hostile_templates.rs covers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use envplane_core::cost::PricingRules;
use envplane_e2e::testcloud::{self, Cloud};
use envplane_e2e::{
    eventually, git_repository, notification_target, spawn_app_configured, tools_dir, TestApp,
};
use envplane_local::Isolation;
use serde_json::{json, Value};

const TERRAFORM_VERSION: &str = "1.0.3";

fn resources() -> &'static str {
    r#"
# The runner passes the tags the bill is grouped by (docs/costs.md).
variable "envplane_tags" {
  type = map(string)
}

resource "testcloud_instance" "web" {
  instance_type = "t3.micro"
  tags          = merge(var.envplane_tags, { team = "payments" })
}

resource "testcloud_volume" "data" {
  size = 20
}
"#
}

/// A tools directory of this test's own: the tests' Terraform and the provider mirror.
fn tools_with_testcloud(dir: &Path) -> Option<()> {
    let terraform = tools_dir()
        .join("terraform")
        .join(TERRAFORM_VERSION)
        .join("terraform");
    if !terraform.is_file() {
        return None;
    }
    let copied = dir.join("terraform").join(TERRAFORM_VERSION);
    std::fs::create_dir_all(&copied).unwrap();
    std::fs::copy(&terraform, copied.join("terraform")).unwrap();
    testcloud::provider_mirror(&dir.join("providers")).expect("the provider mirror");
    Some(())
}

async fn environment(app: &TestApp, name: &str) -> Value {
    app.get(&format!("/v1/environments/{name}"), &app.admin_key)
        .await
        .expect(200)
}

/// The drift events the target received, in order.
fn drift_events(received: &envplane_e2e::Received) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, body)| {
            let event: Value = serde_json::from_slice(body).ok()?;
            let event = event["event"].as_str()?.to_string();
            event.starts_with("drift.").then_some(event)
        })
        .collect()
}

#[tokio::test]
async fn real_drift_is_found_told_and_remediated_once_and_real_plans_are_priced() {
    let tools = tempfile::tempdir().unwrap();
    if tools_with_testcloud(tools.path()).is_none() {
        eprintln!("SKIPPED: Terraform {TERRAFORM_VERSION} is not in the test tools directory (scripts/test installs it)");
        return;
    }
    let cloud_dir = tempfile::tempdir().unwrap();
    let tools_path = tools.path().to_path_buf();
    let app = spawn_app_configured(Arc::new(move |config| {
        config.tools_dir = tools_path.clone();
        config.isolation = Isolation::Unsafe;
        config.pricing = PricingRules {
            aliases: [
                ("testcloud_instance".into(), "aws_instance".into()),
                ("testcloud_volume".into(), "aws_ebs_volume".into()),
            ]
            .into(),
            default_region: Some("eu-west-1".into()),
        };
    }))
    .await;
    let code = format!(
        "{}{}",
        testcloud::configuration(cloud_dir.path()),
        resources()
    );
    let repository = git_repository(&[("main.tf", &code)]);
    let seeded = app.environment_on(&repository, "web", false).await;
    let (url, received) = notification_target(Vec::new(), Duration::ZERO).await;
    let target = json!({
        "project_id": seeded.project_id, "name": "on-call", "kind": "webhook", "url": url,
        "events": ["drift.detected", "drift.resolved", "drift.check_failed"],
    });
    app.post("/v1/notification-targets", &app.admin_key, target)
        .await
        .expect(201);

    // Applied: real resources, priced as the catalog's t3.micro and a 20 GB gp2 volume.
    let applied = app.deploy(&seeded.environment_id, "apply").await;
    let applied = app.wait_for(&applied, &["succeeded", "failed"]).await;
    assert_eq!(applied["status"], "succeeded", "{applied}");
    let cloud = Cloud::new(cloud_dir.path());
    let instance = cloud.instances().remove(0);
    assert_eq!(instance["instance_type"], "t3.micro");
    let tags = &instance["tags"];
    assert_eq!(tags["envplane:environment"], seeded.environment_id.as_str());
    assert!(tags["envplane:organization"]
        .as_str()
        .unwrap()
        .starts_with("org_"));
    assert_eq!(cloud.volumes().len(), 1);
    let priced = &applied["cost_estimate"];
    assert_eq!(priced["monthly_before"], 0.0, "{priced}");
    let monthly = priced["monthly_after"].as_f64().unwrap();
    assert!((9.0..13.0).contains(&monthly), "t3.micro + 20 GB: {priced}");
    assert_eq!(priced["unpriced"], 0, "{priced}");
    let shown = environment(&app, &seeded.environment_id).await;
    assert_eq!(shown["cost_estimate"]["monthly"], priced["monthly_after"]);

    // Someone resizes the instance in the console; a check every minute, remediated.
    cloud.set_instance_type(instance["id"].as_str().unwrap(), "t3.large");
    let settings = json!({
        "schedules": {"drift": {"cron": "* * * * *"}},
        "auto_remediate_drift": true,
    });
    app.patch(
        &format!("/v1/environments/{}", seeded.environment_id),
        &app.admin_key,
        settings,
    )
    .await
    .expect(200);
    let healed = eventually("the drift found and remediated", || async {
        let shown = environment(&app, &seeded.environment_id).await;
        let events = drift_events(&received);
        match (shown["drift_status"].as_str(), events.len()) {
            (Some("in_sync"), 2) => Ok(shown),
            _ => Err(format!("{} and told {events:?}", shown["drift_status"])),
        }
    })
    .await;
    assert_eq!(
        drift_events(&received),
        ["drift.detected", "drift.resolved"]
    );
    assert_eq!(
        cloud.instances()[0]["instance_type"],
        "t3.micro",
        "set back"
    );

    // The check planned only; the remediation applied the commit the check planned.
    let listed = app
        .get(
            &format!("/v1/environments/{}/deployments", seeded.environment_id),
            &app.admin_key,
        )
        .await
        .expect(200);
    let deployments = listed["items"].as_array().unwrap();
    let remediation = deployments
        .iter()
        .find(|d| d["id"] == healed["drift_check"]["deployment_id"])
        .expect("the remediation");
    assert_eq!(remediation["action"], "apply");
    assert_eq!(remediation["requested_by"], "scheduler:drift");
    let checks: Vec<&Value> = deployments
        .iter()
        .filter(|d| d["action"] == "plan" && d["trigger"]["job"] == "drift")
        .collect();
    let check = checks.last().expect("the check that found the drift");
    assert_eq!(remediation["revision"], check["commit"]);
    let plan = app
        .get(
            &format!("/v1/deployments/{}/plan", check["id"].as_str().unwrap()),
            &app.admin_key,
        )
        .await
        .expect(200);
    let drifted: Vec<&str> = plan["json"]["resource_drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert_eq!(drifted, ["testcloud_instance.web"]);
    // Its estimate: the t3.large found, the t3.micro it would set back.
    let estimate = &plan["cost_estimate"];
    let web = &estimate["resources"][0];
    assert_eq!(web["priced_as"], "aws_instance", "{estimate}");
    assert!(web["monthly_before"].as_f64().unwrap() > web["monthly_after"].as_f64().unwrap());
    assert!(
        estimate["monthly_delta"].as_f64().unwrap() < 0.0,
        "{estimate}"
    );

    // Calendar off, destroyed: nothing left in the cloud, nothing to pay for.
    app.patch(
        &format!("/v1/environments/{}", seeded.environment_id),
        &app.admin_key,
        json!({"schedules": {}}),
    )
    .await
    .expect(200);
    let destroy = app.deploy(&seeded.environment_id, "destroy").await;
    let destroyed = app.wait_for(&destroy, &["succeeded", "failed"]).await;
    assert_eq!(destroyed["status"], "succeeded", "{destroyed}");
    assert!(cloud.is_empty());
    let shown = environment(&app, &seeded.environment_id).await;
    assert!(shown["cost_estimate"].is_null(), "{shown}");
}
