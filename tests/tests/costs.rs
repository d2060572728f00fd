//! Cost estimates on the platform in process, the sandbox played by the test: a plan
//! is priced when its sandbox sends it (the brief on the deployment, resource by
//! resource in `GET /v1/deployments/{id}/plan`), and the environment's monthly cost
//! follows its successful applies and destroys. Prices of real plans of real
//! resources, with real Terraform, are in `drift_terraform.rs`.

use envplane_core::cost::PricingRules;
use envplane_core::deployment::{DeploymentStatus, PlanSummary};
use envplane_core::service::Settings;
use envplane_e2e::kit::{from, Kit};
use serde_json::{json, Value};

/// `terraform show -json` of a plan that creates a t3.micro in eu-west-1 and a bucket,
/// and a resource the catalog does not know.
fn plan_of_a_web_server() -> Value {
    let aws = "registry.terraform.io/hashicorp/aws";
    let create = |address: &str, kind: &str, after: Value| {
        json!({
            "address": address, "mode": "managed", "type": kind, "provider_name": aws,
            "change": {"actions": ["create"], "before": null, "after": after, "after_unknown": {"id": true}},
        })
    };
    json!({
        "configuration": {"provider_config": {"aws": {
            "name": "aws", "full_name": aws,
            "expressions": {"region": {"constant_value": "eu-west-1"}},
        }}},
        "resource_changes": [
            create("aws_instance.web", "aws_instance", json!({"instance_type": "t3.micro"})),
            create("aws_s3_bucket.logs", "aws_s3_bucket", json!({"bucket": "logs"})),
            create("aws_route53_zone.main", "aws_route53_zone", json!({"name": "example.com"})),
        ],
    })
}

async fn applied(kit: &Kit, environment_id: &str, plan: Value) -> String {
    let body = json!({"action": "apply"});
    let apply = kit
        .platform
        .create_deployment(&kit.caller, environment_id, from(body))
        .await
        .unwrap();
    kit.deliver().await;
    let runner = kit.start_runner(&apply.id).await;
    let summary = PlanSummary {
        add: 3,
        ..PlanSummary::default()
    };
    let done = kit.finish_planned(&runner, summary, plan).await;
    assert_eq!(done.status, DeploymentStatus::Succeeded);
    apply.id
}

#[tokio::test]
async fn a_plan_is_priced_on_its_deployment_and_the_environment_keeps_what_it_costs() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("web").await;
    let apply = applied(&kit, &environment, plan_of_a_web_server()).await;

    let brief = kit.deployment(&apply).await.cost_estimate.expect("priced");
    assert_eq!(brief.currency, "USD");
    assert_eq!(brief.monthly_before, 0.0);
    assert!(
        brief.monthly_after > 5.0 && brief.monthly_after < 12.0,
        "{brief:?}"
    );
    assert_eq!(brief.monthly_delta, brief.monthly_after);
    assert_eq!(brief.unpriced, 1, "the hosted zone is not in the catalog");

    let plan = kit
        .platform
        .deployment_plan(&kit.caller, &apply)
        .await
        .unwrap();
    let estimate = plan.cost_estimate;
    assert_eq!(estimate.unpriced, ["aws_route53_zone.main"]);
    let bucket = &estimate.resources[1];
    assert_eq!(bucket.monthly_after, Some(0.0));
    assert!(bucket.note.is_some(), "usage-based, said so");

    let current = kit
        .platform
        .get_environment(&kit.caller, &environment)
        .await
        .unwrap()
        .cost_estimate
        .expect("the apply's plan is what it costs now");
    assert_eq!(current.monthly, brief.monthly_after);
    assert_eq!(current.deployment_id, apply);

    let destroy = kit
        .platform
        .create_deployment(
            &kit.caller,
            &environment,
            from(json!({"action": "destroy"})),
        )
        .await
        .unwrap();
    kit.deliver().await;
    let runner = kit.start_runner(&destroy.id).await;
    kit.finish(&runner, envplane_core::deployment::PhaseResult::Succeeded)
        .await;
    let after_destroy = kit
        .platform
        .get_environment(&kit.caller, &environment)
        .await
        .unwrap();
    assert!(
        after_destroy.cost_estimate.is_none(),
        "nothing left to pay for"
    );
}

#[tokio::test]
async fn an_operator_prices_its_own_types_as_catalog_types_in_a_default_region() {
    let pricing = PricingRules {
        aliases: [("testcloud_instance".to_string(), "aws_instance".to_string())].into(),
        default_region: Some("eu-central-1".into()),
    };
    let kit = Kit::with_settings(Settings {
        pricing,
        ..Settings::default()
    })
    .await;
    let environment = kit.environment("lab").await;
    let plan = json!({"resource_changes": [{
        "address": "testcloud_instance.box", "mode": "managed", "type": "testcloud_instance",
        "provider_name": "registry.terraform.io/envplane/testcloud",
        "change": {"actions": ["create"], "before": null, "after": {"instance_type": "t3.large"}},
    }]});
    let apply = applied(&kit, &environment, plan).await;
    let estimate = kit
        .platform
        .deployment_plan(&kit.caller, &apply)
        .await
        .unwrap()
        .cost_estimate;
    let priced = &estimate.resources[0];
    assert_eq!(priced.priced_as.as_deref(), Some("aws_instance"));
    assert_eq!(priced.region.as_deref(), Some("eu-central-1"));
    assert!(estimate.monthly_after > 50.0, "{estimate:?}");
    assert!(estimate.unpriced.is_empty());
}
