//! GitHub on the AWS adapters, against the emulator: λ webhook's router verifies a pull
//! request's delivery and queues its plan, which runs through SQS, the deployer and the
//! Fargate stand-in; the plan's end asks for a report on the reports queue, and λ
//! reporter's handler edits the pull request on the fake GitHub.

use envplane_aws::emulator::sqs_event;
use envplane_aws::reports::handle_reports;
use envplane_core::github::sign;
use envplane_e2e::aws::{spawn_app_on_aws_with_github, Harness};
use envplane_e2e::{eventually, git_repository, GREETING_CONFIG};
use envplane_testkit::github::{FakeGitHub, APP_PRIVATE_KEY};
use serde_json::{json, Value};

const SECRET: &str = "the-webhook-secret-on-aws";

#[tokio::test]
async fn a_pull_request_is_planned_and_reported_through_the_webhook_and_reporter_functions() {
    let github = FakeGitHub::start().await;
    let aws = spawn_app_on_aws_with_github(Harness::FULL, Some(&github.url)).await;
    let settings = &aws.stack.settings;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "review", false).await;
    let key = &aws.app.admin_key;
    aws.app
        .patch(
            &format!("/v1/environments/{}", seeded.environment_id),
            key,
            json!({ "pull_request_plans": true }),
        )
        .await
        .expect(200);
    aws.app
        .put(
            "/v1/organization/vcs/github",
            key,
            json!({ "app_id": 77, "installation_id": 45678901, "private_key": APP_PRIVATE_KEY, "webhook_secret": SECRET }),
        )
        .await
        .expect(200);
    github.set_files("acme/infra", 17, &["main.tf"]);

    // λ webhook, as API Gateway runs it.
    let webhook = envplane_aws::config::platform(settings, &aws.stack.sdk);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_url = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
    let router = envplane_http::webhook_router(webhook.platform);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let commit = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repository.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let mut body: Value =
        serde_json::from_str(include_str!("../../events/github/pull_request_opened.json")).unwrap();
    body["repository"]["clone_url"] = json!("https://git.envplane.test/acme/review.git");
    body["pull_request"]["head"]["sha"] = json!(commit);
    let body = serde_json::to_vec(&body).unwrap();
    let deliver = |delivery: &'static str| {
        reqwest::Client::new()
            .post(&webhook_url)
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", delivery)
            .header("x-github-hook-installation-target-type", "integration")
            .header("x-github-hook-installation-target-id", "77")
            .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
            .body(body.clone())
            .send()
    };
    let answer: Value = deliver("aws-1").await.unwrap().json().await.unwrap();
    let plan = answer["deployments"][0]
        .as_str()
        .expect("a plan")
        .to_string();
    let again: Value = deliver("aws-1").await.unwrap().json().await.unwrap();
    assert_eq!(again["result"], "duplicate");

    let done = aws.app.wait_for(&plan, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(github
        .statuses()
        .iter()
        .any(|(_, sha, status)| *sha == commit && status["state"] == "pending"));

    // λ reporter, as the SQS event source mapping runs it.
    let reporter = envplane_aws::config::platform(settings, &aws.stack.sdk);
    let reports_queue = settings.reports_queue_url.clone().unwrap();
    eventually(
        "the reporter makes the report the plan's end asked for",
        || async {
            let received = aws
                .sqs
                .receive_message()
                .queue_url(&reports_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let messages = received.messages.unwrap_or_default();
            if !messages.is_empty() {
                let failed = handle_reports(&reporter.platform, sqs_event(&messages)).await;
                assert!(failed.batch_item_failures.is_empty());
            }
            match github.comments().as_slice() {
                [comment] if comment.body.contains("planned") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(github
        .statuses()
        .iter()
        .any(|(_, sha, status)| *sha == commit && status["state"] == "success"));
}

#[tokio::test]
async fn a_push_touching_more_environments_than_one_transaction_holds_queues_every_one() {
    const ENVIRONMENTS: usize = 120;
    let github = FakeGitHub::start().await;
    let aws = spawn_app_on_aws_with_github(Harness::API_ONLY, Some(&github.url)).await;
    let (app, key) = (&aws.app, &aws.app.admin_key);
    let project = app
        .post("/v1/projects", key, json!({ "name": "many" }))
        .await
        .expect(201);
    let template = app
        .post(
            "/v1/templates",
            key,
            json!({ "name": "stack", "project_id": project["id"], "repository": "https://github.com/acme/infra.git", "iac_version": "1.0.3" }),
        )
        .await
        .expect(201);
    for n in 0..ENVIRONMENTS {
        app.post(
            "/v1/environments",
            key,
            json!({ "name": format!("e{n}"), "project_id": project["id"], "template_id": template["id"], "continuous_deployment": true }),
        )
        .await
        .expect(201);
    }
    app.put(
        "/v1/organization/vcs/github",
        key,
        json!({ "token": "github_pat_of_the_tests", "webhook_secret": SECRET }),
    )
    .await
    .expect(200);
    let organization = app.get("/v1/organization", key).await.expect(200);

    let webhook = envplane_aws::config::platform(&aws.stack.settings, &aws.stack.sdk);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_url = format!(
        "http://{}/webhooks/github?organization={}",
        listener.local_addr().unwrap(),
        organization["id"].as_str().unwrap()
    );
    let router = envplane_http::webhook_router(webhook.platform);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let body = include_bytes!("../../events/github/push.json");
    let answer: Value = reqwest::Client::new()
        .post(&webhook_url)
        .header("x-github-event", "push")
        .header("x-github-delivery", "aws-many")
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queued = answer["deployments"].as_array().expect("deployments");
    assert_eq!(queued.len(), ENVIRONMENTS, "{answer}");
    for id in [&queued[0], &queued[ENVIRONMENTS - 1]] {
        let deployment = app
            .get(&format!("/v1/deployments/{}", id.as_str().unwrap()), key)
            .await
            .expect(200);
        assert_eq!(deployment["status"], "queued");
        assert_eq!(deployment["trigger"]["kind"], "push");
    }
}
