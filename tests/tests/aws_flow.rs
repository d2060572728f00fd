//! The deployment flow on the AWS adapters, against the emulator: API -> SQS -> deployer
//! -> RunTask -> runner (real Terraform) -> state on S3 -> task-events. See
//! `envplane_e2e::aws` for what the harness plays instead of AWS.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_aws::deployer::handle_batch;
use envplane_aws::emulator::sqs_event;
use envplane_aws::reaper::{handle_schedule, reap_dead_letters, DeadLetters, DEAD_LETTER_REASON};
use envplane_e2e::aws::{spawn_app_on_aws, Harness, Sandbox};
use envplane_e2e::{git_repository, GREETING_CONFIG};
use serde_json::{json, Value};
use std::sync::Arc;

use reqwest::Method;

const PASSWORD: &str = "Qv7-aws-sensitive-PASSWORD";

#[tokio::test]
async fn a_deployment_plans_waits_applies_and_destroys_through_sqs_fargate_and_s3() {
    let aws = spawn_app_on_aws(Harness::FULL).await;
    let app = &aws.app;
    let key = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "on-aws", true).await;
    let environment_path = format!("/v1/environments/{}", seeded.environment_id);
    app.set_variable(
        &seeded.environment_id,
        "password",
        json!({"value": PASSWORD, "sensitive": true}),
    )
    .await;

    let id = app.deploy(&seeded.environment_id, "apply").await;
    let waiting = app.wait_for(&id, &["waiting_for_approval", "failed"]).await;
    assert_eq!(waiting["status"], "waiting_for_approval", "{waiting}");
    app.post(&format!("/v1/deployments/{id}/approve"), &key, json!({}))
        .await
        .expect(200);
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2);
    let logs = app.logs(&id).await;
    assert!(logs.contains("Apply complete!"), "{logs}");
    assert!(!logs.contains(PASSWORD));
    let environment = app.get(&environment_path, &key).await.expect(200);
    assert_eq!(
        environment["outputs"],
        json!({"message": "hello world", "password": null})
    );
    let state = app
        .get(&format!("{environment_path}/state-versions/1"), &key)
        .await
        .expect(200);
    assert_eq!(state["outputs"]["message"]["value"], "hello world");
    let mut keys: Vec<String> = aws
        .artifact_keys()
        .await
        .into_iter()
        .map(|key| key.split_once('/').unwrap().1.to_string())
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[0], format!("plan-views/{id}"));
    assert_eq!(keys[1], format!("plans/{id}"));
    // Every save has a key of its own: `state/<env>/<version>-<unique>`.
    let state_prefix = format!("state/{}/1-", seeded.environment_id);
    assert!(keys[2].starts_with(&state_prefix), "{keys:?}");
    let plan = app
        .get(&format!("/v1/deployments/{id}/plan"), &key)
        .await
        .expect(200);
    assert!(plan["text"].as_str().unwrap().contains("message"), "{plan}");
    assert!(!plan.to_string().contains(PASSWORD), "{plan}");

    let destroy = app.deploy(&seeded.environment_id, "destroy").await;
    let approval = app
        .wait_for(&destroy, &["waiting_for_approval", "failed"])
        .await;
    assert_eq!(approval["status"], "waiting_for_approval", "{approval}");
    app.post(
        &format!("/v1/deployments/{destroy}/approve"),
        &key,
        json!({}),
    )
    .await
    .expect(200);
    let destroyed = app.wait_for(&destroy, &["succeeded", "failed"]).await;
    assert_eq!(destroyed["status"], "succeeded", "{destroyed}");
    let environment = app.get(&environment_path, &key).await.expect(200);
    assert_eq!(environment["outputs"], json!({}));

    // One sandbox per phase: plan, approved apply, destroy plan, approved destroy.
    assert_eq!(
        aws.started_tasks().await,
        [
            format!("{id}.1"),
            format!("{id}.2"),
            format!("{destroy}.1"),
            format!("{destroy}.2")
        ]
    );
    let stored = aws.everything_stored().await;
    for secret in [PASSWORD, key.as_str()] {
        assert!(
            !stored.contains(secret),
            "a secret is stored or sent to ECS in plaintext"
        );
    }
    // The scan saw the table and the tasks' overrides.
    assert!(stored.contains(&id));
    assert!(stored.contains("ENVPLANE_DEPLOYMENT_ID"), "{stored}");
}

#[tokio::test]
async fn a_sandbox_that_dies_fails_its_deployment_and_frees_the_environment() {
    let aws = spawn_app_on_aws(Harness {
        event_source_mapping: true,
        fargate: Some(Sandbox::Crash { exit_code: 137 }),
    })
    .await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "dies", false).await;
    for _ in 0..2 {
        let id = app.deploy(&seeded.environment_id, "apply").await;
        let failed = app.wait_for(&id, &["failed", "succeeded"]).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        let reason = failed["reason"].as_str().unwrap();
        assert!(reason.contains("exit code 137"), "{reason}");
        assert!(
            reason.contains("Essential container in task exited"),
            "{reason}"
        );
    }
}

/// SQS delivers at least once: the same message, received again after its visibility
/// timeout, must not start a second sandbox.
#[tokio::test]
async fn a_message_delivered_three_times_starts_one_task() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "redelivered", false).await;
    let id = app.deploy(&seeded.environment_id, "plan").await;

    for delivery in 1..=3 {
        let received = aws
            .sqs
            .receive_message()
            .queue_url(&aws.stack.settings.queue_url)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        assert_eq!(messages.len(), 1, "delivery {delivery}");
        let event = sqs_event(messages);
        assert_eq!(
            event.records[0].attributes["ApproximateReceiveCount"],
            delivery.to_string()
        );
        let response = handle_batch(
            &aws.deployer.platform,
            aws.deployer.queue.as_ref(),
            event,
            5,
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    assert_eq!(aws.started_tasks().await, [format!("{id}.1")]);
    let deployment = app
        .get(&format!("/v1/deployments/{id}"), &app.admin_key)
        .await
        .expect(200);
    assert_eq!(deployment["status"], "running", "{deployment}");
}

/// Two deployer instances, each with its own batch, race for one environment: the
/// environment's lock lets exactly one sandbox start, for its oldest deployment.
#[tokio::test]
async fn two_deployers_racing_for_one_environment_start_one_task() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "raced", false).await;
    let first = app.deploy(&seeded.environment_id, "plan").await;
    let second = app.deploy(&seeded.environment_id, "plan").await;
    let received = aws
        .sqs
        .receive_message()
        .queue_url(&aws.stack.settings.queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 2);

    let other = envplane_aws::config::dispatching_platform(&aws.stack.settings, &aws.stack.sdk);
    let (one, two) = tokio::join!(
        handle_batch(
            &aws.deployer.platform,
            aws.deployer.queue.as_ref(),
            sqs_event(&messages[..1]),
            5
        ),
        handle_batch(
            &other.platform,
            other.queue.as_ref(),
            sqs_event(messages),
            5
        ),
    );
    assert!(one.batch_item_failures.is_empty(), "{one:?}");
    assert!(two.batch_item_failures.is_empty(), "{two:?}");
    assert_eq!(aws.started_tasks().await, [format!("{first}.1")]);
    let waiting = app
        .get(&format!("/v1/deployments/{second}"), &app.admin_key)
        .await
        .expect(200);
    assert_eq!(waiting["status"], "queued", "{waiting}");
}

/// A message no deployer can read goes back to the queue each time, and the queue's
/// redrive policy moves it to the dead-letter queue after the fifth delivery.
#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let queue_url = &aws.stack.settings.queue_url;
    aws.sqs
        .send_message()
        .queue_url(queue_url)
        .message_body("{not a deployment message")
        .send()
        .await
        .unwrap();

    let mut deliveries = 0;
    let deadline = std::time::Instant::now() + envplane_e2e::PATIENCE;
    while messages_in(&aws, &aws.stack.dead_letter_queue_url).await == 0 {
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        deliveries += envplane_aws::emulator::deliver_batch(
            &aws.deployer.platform,
            aws.deployer.queue.as_ref(),
            &aws.sqs,
            queue_url,
            1,
        )
        .await
        .unwrap();
    }
    assert_eq!(deliveries, 5);
    assert_eq!(messages_in(&aws, queue_url).await, 0);

    // The reaper drops it: it names no deployment.
    let reaped = reap_dead_letters(&aws.deployer.platform, &dead_letters(&aws))
        .await
        .unwrap();
    assert_eq!(reaped.unreadable, 1);
    assert_eq!(messages_in(&aws, &aws.stack.dead_letter_queue_url).await, 0);
}

/// A deployer that died on a message's last delivery leaves its deployment queued and the
/// message in the dead-letter queue: the reaper fails the deployment with the reason.
#[tokio::test]
async fn the_reaper_fails_a_deployment_whose_message_was_dead_lettered() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws
        .environment_on(&repository, "dead-lettered", false)
        .await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    // What the redrive policy does after the last delivery.
    let received = aws
        .sqs
        .receive_message()
        .queue_url(&aws.stack.settings.queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    aws.sqs
        .send_message()
        .queue_url(&aws.stack.dead_letter_queue_url)
        .message_body(message.body().unwrap())
        .send()
        .await
        .unwrap();
    aws.sqs
        .delete_message()
        .queue_url(&aws.stack.settings.queue_url)
        .receipt_handle(message.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();

    let reaped = reap_dead_letters(&aws.deployer.platform, &dead_letters(&aws))
        .await
        .unwrap();
    assert_eq!(reaped.concluded, 1);
    let failed = app
        .get(&format!("/v1/deployments/{id}"), &app.admin_key)
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["reason"], DEAD_LETTER_REASON);
    assert!(aws.started_tasks().await.is_empty());
    // The environment is free: the next deployment is dispatched.
    let next = app.deploy(&seeded.environment_id, "plan").await;
    envplane_aws::emulator::deliver_batch(
        &aws.deployer.platform,
        aws.deployer.queue.as_ref(),
        &aws.sqs,
        &aws.stack.settings.queue_url,
        1,
    )
    .await
    .unwrap();
    assert_eq!(aws.started_tasks().await, [format!("{next}.1")]);
}

fn dead_letters(aws: &envplane_e2e::aws::AwsApp) -> DeadLetters {
    DeadLetters::new(aws.sqs.clone(), &aws.stack.dead_letter_queue_url)
}

async fn messages_in(aws: &envplane_e2e::aws::AwsApp, queue_url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|count| count.parse::<usize>().unwrap())
        .sum()
}

#[tokio::test]
async fn cancelling_stops_the_task_through_the_deployer() {
    let aws = spawn_app_on_aws(Harness::FULL).await;
    let app = &aws.app;
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: sleep 300\n"),
    ]);
    let seeded = aws.environment_on(&repository, "cancel", false).await;
    let id = app.deploy(&seeded.environment_id, "plan").await;
    app.wait_for_step(&id, "before_plan").await;

    // The api has no ECS client: it queues the stop, the deployer calls StopTask, and
    // the sandbox gets SIGTERM.
    app.post(
        &format!("/v1/deployments/{id}/cancel"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect(200);
    let cancelled = app
        .wait_for(&id, &["cancelled", "failed", "succeeded"])
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let stopped = aws.started_tasks().await;
    assert_eq!(stopped.len(), 1, "{stopped:?}");
}

#[tokio::test]
async fn the_state_lock_is_held_by_one_and_released_with_standard_methods() {
    // No Fargate stand-in: the test plays the sandbox, trading the task's launch
    // credential for the state credential Terraform would get.
    let aws = spawn_app_on_aws(Harness {
        event_source_mapping: true,
        fargate: None,
    })
    .await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "lock", false).await;
    aws.app.deploy(&seeded.environment_id, "plan").await;
    let token = aws.sandbox_state_credential().await;
    let call = |method: Method, id: &str| {
        aws.state_call(method, &seeded.environment_id, "/lock", &token)
            .json(&json!({"ID": id, "Operation": "OperationTypePlan"}))
            .send()
    };

    assert_eq!(call(Method::POST, "first").await.unwrap().status(), 200);
    let refused = call(Method::POST, "second").await.unwrap();
    assert_eq!(refused.status(), 423);
    let held: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(held["ID"], "first", "the holder is named: {held}");
    // Only the holder's ID releases it.
    assert_eq!(call(Method::DELETE, "second").await.unwrap().status(), 409);
    assert_eq!(call(Method::DELETE, "first").await.unwrap().status(), 200);
    assert_eq!(call(Method::POST, "second").await.unwrap().status(), 200);
}

/// A reader of DescribeTasks, CloudTrail or the task events finds no credential: RunTask
/// names the launch file, which ECS reads for the container. What the sandbox's
/// environment holds is the launch credential: traded once by the sandbox, it opens
/// nothing afterwards. Terraform's state credential opens the state and nothing of the
/// runner's; the runner's is never traded again.
#[tokio::test]
async fn the_launch_credential_is_traded_once_and_each_credential_opens_its_own_calls() {
    let aws = spawn_app_on_aws(Harness {
        event_source_mapping: true,
        fargate: None,
    })
    .await;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "trade", false).await;
    aws.app.deploy(&seeded.environment_id, "plan").await;
    let launch = aws.runner_token().await;
    assert!(
        !aws.everything_stored().await.contains(&launch),
        "the launch credential is in the table or in what ECS shows of the task"
    );
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", aws.app.address);
    let trade = |token: String| {
        let request = client.post(url("/v1/runner/session")).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };

    let first = trade(launch.clone()).await;
    assert_eq!(first.status(), 200);
    let session: serde_json::Value = first.json().await.unwrap();
    assert_eq!(
        session["job"]["environment_id"],
        seeded.environment_id.as_str()
    );
    let runner = session["runner_token"].as_str().unwrap().to_string();
    let state = session["state_token"].as_str().unwrap().to_string();
    assert_eq!(trade(launch.clone()).await.status(), 401, "a second trade");
    assert_eq!(trade(runner.clone()).await.status(), 403);
    assert_eq!(trade(state.clone()).await.status(), 403);

    let state_url = url(&format!("/v1/state/{}", seeded.environment_id));
    for token in [&launch, &state] {
        let step = client
            .post(url("/v1/runner/steps"))
            .bearer_auth(token)
            .json(&json!({"name": "forged", "status": "running"}))
            .send()
            .await
            .unwrap();
        assert!(
            [401, 403].contains(&step.status().as_u16()),
            "{}",
            step.status()
        );
        let finish = client
            .post(url("/v1/runner/finish"))
            .bearer_auth(token)
            .json(&json!({"result": "succeeded"}))
            .send()
            .await
            .unwrap();
        assert!([401, 403].contains(&finish.status().as_u16()));
    }
    let read = |token: String| {
        let request = client.get(&state_url).basic_auth("envplane", Some(token));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(read(state.clone()).await, 204, "no state yet");
    assert_eq!(read(launch.clone()).await, 401);
    let step = client
        .post(url("/v1/runner/steps"))
        .bearer_auth(&runner)
        .json(&json!({"name": "clone", "status": "running"}))
        .send()
        .await
        .unwrap();
    assert_eq!(step.status(), 204);
    // A plan-only deployment saves no plan: the upload is refused.
    let plan = client
        .put(url("/v1/runner/plan"))
        .bearer_auth(&runner)
        .body(b"plan".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(plan.status(), 409);
}

/// The escape hatches for what a lost sandbox leaves behind, with the test playing a
/// sandbox that takes Terraform's state lock and is never heard of again (no task ever
/// stops): an admin releases the lock and ends the deployment at once; the environment's
/// next deployment is dispatched. A deployer may do neither; both are audited.
#[tokio::test]
async fn admins_free_a_stuck_state_lock_and_end_a_deployment_that_cannot_end() {
    let aws = spawn_app_on_aws(Harness {
        event_source_mapping: true,
        fargate: None,
    })
    .await;
    let app = &aws.app;
    let admin = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "stuck", false).await;
    let deployer = app.key(&admin, "deployer", Some(&seeded.project_id)).await;
    let stuck = app.deploy(&seeded.environment_id, "plan").await;
    let next = app.deploy(&seeded.environment_id, "plan").await;

    let state = aws.sandbox_state_credential().await;
    let take_lock = || {
        aws.state_call(Method::POST, &seeded.environment_id, "/lock", &state)
            .json(&json!({"ID": "lost-sandbox", "Operation": "OperationTypePlan"}))
            .send()
    };
    assert_eq!(take_lock().await.unwrap().status(), 200);

    let unlock = format!("/v1/environments/{}/state/unlock", seeded.environment_id);
    app.post(&unlock, &deployer, json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(&unlock, &admin, json!({})).await.expect(204);
    app.post(&unlock, &admin, json!({}))
        .await
        .expect_error(409, "conflict");
    // Released: the lock can be taken again.
    assert_eq!(take_lock().await.unwrap().status(), 200);

    let force = format!("/v1/deployments/{stuck}/cancel?force=true");
    app.post(&force, &deployer, json!({}))
        .await
        .expect_error(403, "forbidden");
    let cancelled = app.post(&force, &admin, json!({})).await.expect(200);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["reason"]
        .as_str()
        .unwrap()
        .starts_with("force-cancelled by"));
    // Its state lock went with it, and its credentials stop working.
    assert_eq!(take_lock().await.unwrap().status(), 401);
    app.wait_for(&next, &["running"]).await;

    let audit = app
        .get("/v1/audit-events?limit=500", &admin)
        .await
        .expect(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["action"].as_str())
        .collect();
    assert!(actions.contains(&"environment.state_unlock"), "{actions:?}");
    assert!(actions.contains(&"deployment.force_cancel"), "{actions:?}");
}

/// A clock ahead of the system's by `ahead`: the watchdog as it will run later.
struct Later(chrono::Duration);

impl envplane_core::ports::Clock for Later {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
}

/// A deployment whose sandbox never reports ends when its environment's timeout has
/// passed: the watchdog (run by the reaper's schedule) fails it "timed out after 1h",
/// releases its environment and state locks, asks the deployer to stop its task, and the
/// environment's next deployment starts. Two watchdogs at once end it once. The test
/// delivers the queue itself: a deployment dispatched while the watchdogs' clock runs an
/// hour ahead would count as timed out too.
#[tokio::test]
async fn a_deployment_past_its_timeout_fails_and_frees_its_environment() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let admin = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "slow", false).await;
    let environment_path = format!("/v1/environments/{}", seeded.environment_id);
    for minutes in [0, 1441] {
        app.patch(
            &environment_path,
            &admin,
            json!({"deployment_timeout_minutes": minutes}),
        )
        .await
        .expect_error(422, "validation_failed");
    }
    let changed = app
        .patch(
            &environment_path,
            &admin,
            json!({"deployment_timeout_minutes": 60}),
        )
        .await
        .expect(200);
    assert_eq!(changed["deployment_timeout_minutes"], 60);
    let slow = app.deploy(&seeded.environment_id, "plan").await;
    let next = app.deploy(&seeded.environment_id, "plan").await;
    deliver_queued(&aws).await;

    // The sandbox starts and takes Terraform's state lock, then is never heard of again.
    let state = aws.sandbox_state_credential().await;
    let locked = aws
        .state_call(Method::POST, &seeded.environment_id, "/lock", &state)
        .json(&json!({"ID": "slow-sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), 200);

    let (settings, sdk) = (&aws.stack.settings, &aws.stack.sdk);
    let now = envplane_aws::config::concluding_platform(settings, sdk).platform;
    assert_eq!(now.run_watchdog().await.unwrap().timed_out, 0);
    let later = Arc::new(Later(chrono::Duration::minutes(61)));
    let watchdog = envplane_aws::config::concluding_platform_with_clock(settings, sdk, later);
    let (first, second) = tokio::join!(
        watchdog.platform.run_watchdog(),
        watchdog.platform.run_watchdog()
    );
    // Each count is what that watchdog believes it did. One whose commit had to be sent
    // again (a lost answer from a loaded emulator) finds the deployment ended and counts
    // it as another's: once, in a fresh-clone run, both counted none. Never twice; that
    // it ended, and how, is checked below.
    assert!(first.unwrap().timed_out + second.unwrap().timed_out <= 1);

    let failed = app
        .get(&format!("/v1/deployments/{slow}"), &admin)
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["reason"], "timed out after 1h");
    let unlock = format!("{environment_path}/state/unlock");
    app.post(&unlock, &admin, json!({}))
        .await
        .expect_error(409, "conflict");
    // The deployer takes the next deployment's message and the stop of the timed-out
    // deployment's task.
    envplane_e2e::eventually("the next deployment running", || async {
        deliver_queued(&aws).await;
        let next = app.get(&format!("/v1/deployments/{next}"), &admin).await;
        match next.body["status"].as_str() {
            Some("running") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    aws.wait_until_stopped(&format!("{slow}.1")).await;
}

/// The reaper's schedule runs the scheduled jobs where the region is active: an
/// environment whose time to live ended gets one destroy (two reapers at once queue
/// one), dispatched through SQS; a passive region's reaper queues nothing.
#[tokio::test]
async fn the_active_regions_reaper_destroys_an_environment_whose_time_to_live_ended() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "preview", false).await;
    let environment = format!("/v1/environments/{}", seeded.environment_id);
    app.post(
        &format!("{environment}/ttl"),
        &app.admin_key,
        json!({"ttl": "1h"}),
    )
    .await
    .expect(200);
    let later = Arc::new(Later(chrono::Duration::minutes(61)));
    let sdk = &aws.stack.sdk;
    let tick = || EventBridgeEvent::<serde_json::Value>::default();

    let mut passive = aws.stack.settings.clone();
    passive.regions = envplane_e2e::kit::passive_region();
    let passive =
        envplane_aws::config::concluding_platform_with_clock(&passive, sdk, later.clone());
    handle_schedule(&passive.platform, &dead_letters(&aws), tick())
        .await
        .unwrap();
    let deployments = format!("{environment}/deployments");
    let none = app.get(&deployments, &app.admin_key).await.expect(200);
    assert_eq!(none["items"], json!([]), "a passive region runs no job");

    let active =
        envplane_aws::config::concluding_platform_with_clock(&aws.stack.settings, sdk, later);
    let dead_letters = dead_letters(&aws);
    let (first, second) = tokio::join!(
        handle_schedule(&active.platform, &dead_letters, tick()),
        handle_schedule(&active.platform, &dead_letters, tick()),
    );
    first.unwrap();
    second.unwrap();
    let queued = app.get(&deployments, &app.admin_key).await.expect(200);
    let items = queued["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queued}");
    assert_eq!(items[0]["action"], "destroy");
    assert_eq!(items[0]["requested_by"], "scheduler:ttl");
    let destroy = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(deliver_queued(&aws).await, 1);
    assert_eq!(aws.started_tasks().await, [format!("{destroy}.1")]);
    let ended = app.get(&environment, &app.admin_key).await.expect(200);
    assert_eq!(ended["expires_at"], Value::Null);
}

/// Deleting an environment is refused while deployments of it have not ended or it
/// holds Terraform state; an admin may force it, which cancels what has not ended (and
/// stops its sandbox) first.
#[tokio::test]
async fn an_environment_in_use_is_deleted_only_by_force() {
    let aws = spawn_app_on_aws(Harness {
        event_source_mapping: true,
        fargate: None,
    })
    .await;
    let app = &aws.app;
    let admin = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let seeded = aws.environment_on(&repository, "in-use", false).await;
    let deployer = app.key(&admin, "deployer", Some(&seeded.project_id)).await;
    let environment = format!("/v1/environments/{}", seeded.environment_id);
    let first = app.deploy(&seeded.environment_id, "plan").await;
    let queued = app.deploy(&seeded.environment_id, "plan").await;

    // The first sandbox saves a state, then is never heard of again.
    let state = aws.sandbox_state_credential().await;
    let save = |body: serde_json::Value| {
        aws.state_call(Method::POST, &seeded.environment_id, "", &state)
            .json(&body)
            .send()
    };
    let saved = save(
        json!({"version": 4, "serial": 1, "lineage": "in-use", "outputs": {}, "resources": []}),
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), 200);

    // What may follow it: the same lineage, a serial that does not go back.
    let another = save(json!({"version": 4, "serial": 2, "lineage": "other", "resources": []}));
    assert_eq!(another.await.unwrap().status(), 409);
    let older = save(json!({"version": 4, "serial": 0, "lineage": "in-use", "resources": []}));
    assert_eq!(older.await.unwrap().status(), 409);
    // Two saves at once: one is version 2, the other refused, and the state read is
    // exactly the saved one's (a refused save never touches a committed version).
    let (a, b) = tokio::join!(
        save(json!({"version": 4, "serial": 3, "lineage": "in-use", "resources": [], "by": "a"})),
        save(json!({"version": 4, "serial": 3, "lineage": "in-use", "resources": [], "by": "b"}))
    );
    let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    let read: serde_json::Value = aws
        .state_call(Method::GET, &seeded.environment_id, "", &state)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions = app
        .get(&format!("{environment}/state-versions"), &admin)
        .await
        .expect(200);
    let newest = &versions["items"][0];
    assert_eq!(read["serial"], 3);
    let winner = if statuses == [200, 200] {
        None
    } else {
        Some(if statuses[0] == 200 { "a" } else { "b" })
    };
    if let Some(winner) = winner {
        assert_eq!(
            read["by"], winner,
            "the state read is not the committed one"
        );
        assert_eq!(newest["version"], 2);
    }

    let refused = app
        .delete(&environment, &deployer)
        .await
        .expect_error(409, "conflict");
    assert!(refused.contains("have not ended"), "{refused}");
    app.delete(&format!("{environment}?force=true"), &deployer)
        .await
        .expect_error(403, "forbidden");

    app.post(
        &format!("/v1/deployments/{queued}/cancel"),
        &admin,
        json!({}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/deployments/{first}/cancel?force=true"),
        &admin,
        json!({}),
    )
    .await
    .expect(200);
    let refused = app
        .delete(&environment, &deployer)
        .await
        .expect_error(409, "conflict");
    assert!(
        refused.contains("holds Terraform state (version"),
        "{refused}"
    );

    let last = app.deploy(&seeded.environment_id, "plan").await;
    app.wait_for(&last, &["running"]).await;
    app.delete(&format!("{environment}?force=true"), &admin)
        .await
        .expect(204);
    let cancelled = app
        .get(&format!("/v1/deployments/{last}"), &admin)
        .await
        .expect(200);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["reason"]
        .as_str()
        .unwrap()
        .starts_with("the environment was deleted by"));
    app.get(&environment, &admin)
        .await
        .expect_error(404, "not_found");
    aws.wait_until_stopped(&format!("{last}.1")).await;
}

/// Receives what the deployments queue holds and hands it to the deployer.
async fn deliver_queued(aws: &envplane_e2e::aws::AwsApp) -> usize {
    let received = aws
        .sqs
        .receive_message()
        .queue_url(&aws.stack.settings.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    if !messages.is_empty() {
        let event = sqs_event(messages);
        handle_batch(
            &aws.deployer.platform,
            aws.deployer.queue.as_ref(),
            event,
            5,
        )
        .await;
    }
    messages.len()
}

/// Takes every message off the deployments queue and drops it, as a lost send would.
async fn lose_queued_messages(aws: &envplane_e2e::aws::AwsApp) {
    let queue_url = &aws.stack.settings.queue_url;
    let received = aws
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    for message in received.messages() {
        aws.sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
}

/// A queued deployment whose queue message was lost (SendMessage failed after the
/// commit, a message dropped) is not queued forever: once it could have started for 5
/// minutes, the watchdog sends its message again; if that one is lost too, it fails
/// with the reason and frees its environment.
#[tokio::test]
async fn a_lost_queue_message_is_sent_again_once_then_the_deployment_fails() {
    let aws = spawn_app_on_aws(Harness::API_ONLY).await;
    let app = &aws.app;
    let admin = app.admin_key.clone();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let (settings, sdk) = (&aws.stack.settings, &aws.stack.sdk);
    let watchdog_after = |minutes| {
        let clock = Arc::new(Later(chrono::Duration::minutes(minutes)));
        envplane_aws::config::concluding_platform_with_clock(settings, sdk, clock).platform
    };

    let seeded = aws.environment_on(&repository, "lost-once", false).await;
    let resent = app.deploy(&seeded.environment_id, "plan").await;
    lose_queued_messages(&aws).await;
    assert_eq!(watchdog_after(0).run_watchdog().await.unwrap().resent, 0);
    assert_eq!(watchdog_after(6).run_watchdog().await.unwrap().resent, 1);
    assert_eq!(deliver_queued(&aws).await, 1);
    let running = app
        .get(&format!("/v1/deployments/{resent}"), &admin)
        .await
        .expect(200);
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["resent_at"], serde_json::Value::Null);

    let seeded = aws.environment_on(&repository, "lost-twice", false).await;
    let lost = app.deploy(&seeded.environment_id, "plan").await;
    lose_queued_messages(&aws).await;
    assert_eq!(watchdog_after(6).run_watchdog().await.unwrap().resent, 1);
    lose_queued_messages(&aws).await;
    assert_eq!(watchdog_after(12).run_watchdog().await.unwrap().lost, 1);
    let failed = app
        .get(&format!("/v1/deployments/{lost}"), &admin)
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .starts_with("it was never dispatched: its queue message was lost"));
}
