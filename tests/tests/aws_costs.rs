//! Actual spend from Cost Explorer, against the emulator: the emulator answers
//! GetCostAndUsage with the results a test queued (`/moto-api/static/ce/...`), one per
//! distinct request, so two queued pages make one paginated answer. Then the whole
//! path: the reaper's spend job lands the bill on the right environments, and the
//! budget threshold goes through the reports queue to its target, once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, Days, NaiveDate};
use envplane_aws::cost_explorer::CostExplorerSpend;
use envplane_aws::emulator::sdk_config;
use envplane_core::ports::{DaySpend, SpendSource, ENVIRONMENT_TAG, ORGANIZATION_TAG};
use envplane_e2e::aws::{spawn_app_on_aws_with_github, Harness};
use envplane_e2e::{eventually, git_repository, notification_target, GREETING_CONFIG};
use envplane_testkit::faults::ManualClock;
use envplane_testkit::github::FakeGitHub;
use serde_json::{json, Value};

#[tokio::test]
async fn daily_spend_reads_every_page_and_leaves_untagged_spend_out() {
    let sdk = sdk_config().await;
    let first = unasked_day();
    let second = first + Days::new(1);
    let after = second + Days::new(1);
    queue_results(json!([
        page(
            first,
            vec![
                group("org_a", "env_1", "1.25"),
                group("org_a", "env_2", "0.5"),
                // Spend on resources without the tags.
                group("", "", "3.0"),
            ],
            Some("page-2"),
        ),
        page(
            second,
            vec![
                group("org_a", "env_1", "2"),
                group("org_a", "env_2", "0.75"),
            ],
            None,
        ),
    ]))
    .await;

    let spend = CostExplorerSpend::from_sdk(&sdk)
        .daily_spend(first, after)
        .await
        .unwrap();

    assert_eq!(
        spend,
        vec![
            day_spend("env_1", first, 1.25),
            day_spend("env_2", first, 0.5),
            day_spend("env_1", second, 2.0),
            day_spend("env_2", second, 0.75),
        ]
    );
}

#[tokio::test]
async fn the_reapers_spend_job_lands_the_bill_on_its_environments_and_trips_a_budget_once() {
    // The fake GitHub only gives the stack its reports queue; nothing here calls it.
    let github = FakeGitHub::start().await;
    let aws = spawn_app_on_aws_with_github(Harness::API_ONLY, Some(&github.url)).await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let web = aws.environment_on(&repository, "web", false).await;
    let batch = aws.environment_on(&repository, "batch", false).await;
    app.patch(
        &format!("/v1/environments/{}", web.environment_id),
        &app.admin_key,
        json!({"monthly_budget": 10.0}),
    )
    .await
    .expect(200);
    let (url, received) = notification_target(Vec::new(), Duration::ZERO).await;
    let target = json!({
        "project_id": web.project_id, "name": "finance", "kind": "webhook", "url": url,
        "events": ["budget.threshold"],
    });
    app.post("/v1/notification-targets", &app.admin_key, target)
        .await
        .expect(201);
    let org_id = organization_of(app).await;

    // The job reads from the first of yesterday's month to today: a day in the middle
    // of a month no earlier run asked about.
    let today = unasked_day().with_day(15).unwrap();
    let yesterday = today - Days::new(1);
    queue_results(json!([page(
        yesterday,
        vec![
            group(&org_id, &web.environment_id, "8.5"),
            group(&org_id, &batch.environment_id, "0.25"),
            group("", "", "40"),
        ],
        None,
    )]))
    .await;
    let clock = Arc::new(ManualClock::default());
    clock.set(today.and_hms_opt(6, 0, 0).unwrap().and_utc());
    let reaper = envplane_aws::config::reaper_platform_with_clock(
        &aws.stack.settings,
        &aws.stack.sdk,
        clock.clone(),
    );
    let round = reaper.platform.run_spend_job().await.unwrap();
    assert_eq!(
        (round.ran, round.environments, round.thresholds),
        (true, 2, 1)
    );
    let again = reaper.platform.run_spend_job().await.unwrap();
    assert!(!again.ran, "once a day");

    let month = format!("{:04}-{:02}", today.year(), today.month());
    let costs = app
        .get(
            &format!(
                "/v1/environments/{}/costs?month={month}",
                web.environment_id
            ),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(costs["actual"]["total"], 8.5, "{costs}");
    assert_eq!(costs["budget"]["thresholds_told"], json!([80]), "{costs}");
    let batch_costs = app
        .get(
            &format!(
                "/v1/environments/{}/costs?month={month}",
                batch.environment_id
            ),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(batch_costs["actual"]["total"], 0.25, "{batch_costs}");

    // λ reporter delivers the budget threshold from the reports queue.
    let settings = &aws.stack.settings;
    let reporter = envplane_aws::config::platform(settings, &aws.stack.sdk);
    eventually("the budget threshold delivered", || async {
        aws.run_reporter_once(&reporter.platform).await?;
        let calls = received.lock().unwrap().len();
        (calls >= 1)
            .then_some(())
            .ok_or_else(|| format!("{calls} calls"))
    })
    .await;
    let (_, body) = received.lock().unwrap()[0].clone();
    let notification: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notification["event"], "budget.threshold");
    assert_eq!(notification["environment_id"], web.environment_id.as_str());
    assert_eq!(notification["budget"]["threshold"], 80);
    assert_eq!(notification["budget"]["spent"], 8.5);
    assert_eq!(received.lock().unwrap().len(), 1, "told once");
}

/// The organization of the admin key's calls: the default one.
async fn organization_of(app: &envplane_e2e::TestApp) -> String {
    let organization = app
        .get("/v1/organization", &app.admin_key)
        .await
        .expect(200);
    organization["id"].as_str().unwrap().to_string()
}

/// A day no earlier run against this emulator asked about: the emulator answers a
/// request it has seen before with the result it gave then, not with a queued one.
fn unasked_day() -> NaiveDate {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let offset = u64::try_from(nanos % 36_500).unwrap();
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + Days::new(offset)
}

/// Queues GetCostAndUsage answers in the emulator, taken in order by requests it has
/// not seen yet.
async fn queue_results(results: Value) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's endpoint");
    let queued = reqwest::Client::new()
        .post(format!(
            "{endpoint}/moto-api/static/ce/cost-and-usage-results"
        ))
        .json(&json!({ "results": results }))
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(queued.status(), reqwest::StatusCode::CREATED);
}

/// One GetCostAndUsage answer: one day's groups, and the token of the next page.
fn page(day: NaiveDate, groups: Vec<Value>, next_page_token: Option<&str>) -> Value {
    let mut page = json!({
        "GroupDefinitions": [
            {"Type": "TAG", "Key": ORGANIZATION_TAG},
            {"Type": "TAG", "Key": ENVIRONMENT_TAG},
        ],
        "ResultsByTime": [{
            "TimePeriod": {"Start": day.to_string(), "End": (day + Days::new(1)).to_string()},
            "Total": {},
            "Groups": groups,
            "Estimated": false,
        }],
        "DimensionValueAttributes": [],
    });
    if let Some(token) = next_page_token {
        page["NextPageToken"] = json!(token);
    }
    page
}

/// A group as Cost Explorer writes it: `<tag key>$<value>`, empty when untagged.
fn group(org: &str, environment: &str, amount: &str) -> Value {
    json!({
        "Keys": [format!("{ORGANIZATION_TAG}${org}"), format!("{ENVIRONMENT_TAG}${environment}")],
        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
    })
}

fn day_spend(environment: &str, day: NaiveDate, amount: f64) -> DaySpend {
    DaySpend {
        org_id: "org_a".into(),
        environment_id: environment.into(),
        day,
        amount,
        currency: "USD".into(),
    }
}
