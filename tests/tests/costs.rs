//! Cost estimates on the platform in process, the sandbox played by the test: a plan
//! is priced when its sandbox sends it (the brief on the deployment, resource by
//! resource in `GET /v1/deployments/{id}/plan`), and the environment's monthly cost
//! follows its successful applies and destroys. Actual spend from a bill the test
//! writes: once a day, on the right environments, each budget threshold told once. Prices of real plans of real
//! resources, with real Terraform, are in `drift_terraform.rs`.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use envplane_core::cost::PricingRules;
use envplane_core::deployment::{DeploymentStatus, PlanSummary};
use envplane_core::ports::DaySpend;
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

/// A day of `environment`'s bill in December 2026.
fn billed(kit: &Kit, environment_id: &str, day: u32, amount: f64) -> DaySpend {
    DaySpend {
        org_id: kit.caller.org_id.clone(),
        environment_id: environment_id.to_string(),
        day: NaiveDate::from_ymd_opt(2026, 12, day).unwrap(),
        amount,
        currency: "USD".into(),
    }
}

fn budget_events(kit: &Kit) -> Vec<(String, u8)> {
    kit.notifier
        .take()
        .into_iter()
        .filter_map(|(delivery, _)| {
            let notification = delivery.notification;
            Some((
                notification.environment_name,
                notification.budget?.threshold,
            ))
        })
        .collect()
}

#[tokio::test]
async fn the_bill_lands_on_each_environment_once_a_day_and_trips_each_budget_threshold_once() {
    let kit = Kit::new(4).await;
    let body = json!({
        "project_id": kit.project_id, "name": "finance", "kind": "webhook",
        "url": "https://hooks.example.com/budget", "events": ["budget.threshold"],
    });
    kit.platform
        .create_notification_target(&kit.caller, from(body))
        .await
        .unwrap();
    let web = kit
        .environment_with("web", json!({"monthly_budget": 100.0}))
        .await
        .id;
    let batch = kit.environment("batch").await;
    kit.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 10, 6, 0, 0).unwrap());
    let mut bill = vec![
        billed(&kit, &web, 8, 40.0),
        billed(&kit, &web, 9, 45.0),
        billed(&kit, &batch, 9, 3.5),
        billed(&kit, "env_deleted_since", 9, 1.0),
    ];
    kit.spend.set(bill.clone());

    let round = kit.platform.run_spend_job().await.unwrap();
    assert_eq!(
        (round.ran, round.environments, round.thresholds),
        (true, 2, 1)
    );
    assert_eq!(budget_events(&kit), [("web".to_string(), 80)]);
    let from = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 12, 10).unwrap();
    assert_eq!(
        kit.spend.readings(),
        [(from, today)],
        "month to date, today left out"
    );

    // Later rounds of the day read nothing: Cost Explorer charges per request.
    kit.clock.advance(Duration::hours(3));
    let again = kit.platform.run_spend_job().await.unwrap();
    assert!(!again.ran);
    assert_eq!(kit.spend.readings().len(), 1);

    let costs = kit
        .platform
        .environment_costs(&kit.caller, &web, None)
        .await
        .unwrap();
    assert_eq!(costs.month, "2026-12");
    let actual = costs.actual.expect("read");
    assert_eq!(actual.total, 85.0);
    assert_eq!(actual.days.len(), 2);
    let budget = costs.budget.expect("a budget");
    assert_eq!(
        (budget.used_percent, budget.thresholds_told),
        (85.0, vec![80])
    );
    let batch_costs = kit
        .platform
        .environment_costs(&kit.caller, &batch, Some("2026-12"))
        .await
        .unwrap();
    assert_eq!(batch_costs.actual.unwrap().total, 3.5);
    assert!(batch_costs.budget.is_none());

    // The next day the bill revises the 9th and adds the 10th: over budget, told once.
    kit.clock.advance(Duration::days(1));
    bill[1] = billed(&kit, &web, 9, 50.0);
    bill.push(billed(&kit, &web, 10, 12.0));
    kit.spend.set(bill.clone());
    let round = kit.platform.run_spend_job().await.unwrap();
    assert_eq!(round.thresholds, 1);
    assert_eq!(budget_events(&kit), [("web".to_string(), 100)]);
    let total = kit
        .platform
        .environment_costs(&kit.caller, &web, None)
        .await
        .unwrap()
        .actual
        .unwrap()
        .total;
    assert_eq!(total, 102.0, "40 + 50 (revised) + 12");

    // A bill that cannot be read is tried again the next day, not every round.
    kit.clock.advance(Duration::days(1));
    kit.spend.fail_next();
    let failed = kit.platform.run_spend_job().await.unwrap();
    assert_eq!((failed.ran, failed.environments), (true, 0));
    assert!(!kit.platform.run_spend_job().await.unwrap().ran);
    assert_eq!(budget_events(&kit), Vec::<(String, u8)>::new());
}

#[tokio::test]
async fn a_passive_region_reads_no_bill() {
    let kit = Kit::with_settings(Settings {
        regions: envplane_e2e::kit::passive_region(),
        ..Settings::default()
    })
    .await;
    let round = kit.platform.run_spend_job().await.unwrap();
    assert!(round.passive && !round.ran);
    assert!(kit.spend.readings().is_empty());
}

#[tokio::test]
async fn budgets_and_months_are_checked() {
    let kit = Kit::new(4).await;
    for budget in [json!(0), json!(-5), json!(1e12), json!("100")] {
        let body = json!({
            "name": "web", "project_id": kit.project_id, "template_id": kit.template_id,
            "monthly_budget": budget,
        });
        let refused = serde_json::from_value::<envplane_core::model::CreateEnvironment>(body);
        if let Ok(input) = refused {
            let error = kit
                .platform
                .create_environment(&kit.caller, input)
                .await
                .unwrap_err();
            assert!(
                matches!(error, envplane_core::Error::Invalid(_)),
                "{budget}: {error:?}"
            );
        }
    }
    let environment = kit.environment("web").await;
    let error = kit
        .platform
        .environment_costs(&kit.caller, &environment, Some("2026-13"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, envplane_core::Error::Invalid(_)),
        "{error:?}"
    );
    let cleared = kit
        .platform
        .update_environment(
            &kit.caller,
            &environment,
            from(json!({"monthly_budget": 50.5})),
        )
        .await
        .unwrap();
    assert_eq!(cleared.monthly_budget, Some(50.5));
    let cleared = kit
        .platform
        .update_environment(
            &kit.caller,
            &environment,
            from(json!({"monthly_budget": null})),
        )
        .await
        .unwrap();
    assert_eq!(cleared.monthly_budget, None);
}
