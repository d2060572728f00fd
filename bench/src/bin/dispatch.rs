//! Dispatch throughput on the AWS adapters against the emulator (issue 4): DEPLOYMENTS
//! queued deployments over ENVIRONMENTS environments, delivered from SQS by DEPLOYERS
//! concurrent deployer instances (as the event source mapping runs them), each started
//! as an ECS task. A stand-in for Fargate stops every task as soon as it runs, and the
//! task-events handler concludes its deployment, which queues the environment's next
//! one. At the end every task the cluster ever ran is counted by `startedBy`: each
//! deployment must have exactly one.
//!
//! Usage: dispatch [DEPLOYMENTS] [ENVIRONMENTS] [DEPLOYERS]   (default 1000 100 5)
//! with `AWS_ENDPOINT_URL` at the emulator; bench/dispatch.sh builds it, starts the
//! emulator and runs it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_ecs::types::DesiredStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use envplane_aws::config::{concluding_platform, dispatching_platform, platform, AwsPlatform};
use envplane_aws::ecs::{parse_started_by, RUNNER_TOKEN_VARIABLE};
use envplane_aws::emulator::{deliver_batch, task_state_change, Stack};
use envplane_aws::task_events::handle_task_state_change;
use envplane_bench::argument;
use envplane_core::auth::Caller;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::TokenScope;
use envplane_core::Platform;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deployments = argument(1, 1000)?;
    let environments = argument(2, 100)?;
    let deployers = argument(3, 5)?;
    let mut stack = Stack::create("https://api.envplane.example.com").await;
    stack.settings.max_parallel_deployments = environments;
    // As deployed, the queue's visibility timeout is at least the deployer's timeout;
    // the tests' 1 s would redeliver every message still being handled.
    aws_sdk_sqs::Client::new(&stack.sdk)
        .set_queue_attributes()
        .queue_url(&stack.settings.queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await?;
    let api = platform(&stack.settings, &stack.sdk).platform;

    let setup = Instant::now();
    let caller = seed_caller(&api).await?;
    let environment_ids = seed_environments(&api, &caller, environments).await?;
    println!(
        "seeded {environments} environments in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let queueing = Instant::now();
    let mut deployment_ids = HashSet::new();
    for index in 0..deployments {
        let environment_id = &environment_ids[index % environments];
        let deployment = api
            .create_deployment(
                &caller,
                environment_id,
                serde_json::from_value(json!({"action": "plan"}))?,
            )
            .await?;
        deployment_ids.insert(deployment.id);
    }
    println!(
        "queued {deployments} deployments in {:.1} s ({:.0}/s)",
        queueing.elapsed().as_secs_f64(),
        deployments as f64 / queueing.elapsed().as_secs_f64()
    );

    let dispatching = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..deployers {
        let deployer = dispatching_platform(&stack.settings, &stack.sdk);
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
        let (queue_url, done) = (stack.settings.queue_url.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            event_source_mapping(deployer, sqs, queue_url, done).await
        }));
    }
    let ecs = aws_sdk_ecs::Client::new(&stack.sdk);
    let task_events = concluding_platform(&stack.settings, &stack.sdk).platform;
    let cluster = stack.settings.ecs_cluster.clone();
    let runner = Runner {
        api: api.clone(),
        s3: envplane_aws::config::s3_client(&stack.sdk, true),
    };
    let started = fargate(&ecs, &cluster, &task_events, &runner, deployments).await?;
    let elapsed = dispatching.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await??;
    }
    println!(
        "dispatched {started} deployments in {elapsed:.1} s: {:.1} deployments/s \
         (each: receive, dispatch, RunTask, stop, task-events, next queued)",
        started as f64 / elapsed
    );

    let per_deployment = tasks_by_deployment(&ecs, &cluster).await?;
    let duplicates: usize = per_deployment.values().map(|count| count - 1).sum();
    let unknown = per_deployment
        .keys()
        .filter(|id| !deployment_ids.contains(*id))
        .count();
    println!(
        "tasks: {} deployments with a task, {duplicates} duplicate tasks, {unknown} unknown",
        per_deployment.len()
    );
    if duplicates > 0 || unknown > 0 || per_deployment.len() != deployments {
        bail!("every deployment must have exactly one task");
    }
    Ok(())
}

async fn seed_caller(api: &Platform) -> anyhow::Result<Caller> {
    let key = api.bootstrap().await?.context("a fresh table bootstraps")?;
    Ok(api.authenticate(key.expose_secret(), "bench").await?)
}

async fn seed_environments(
    api: &Platform,
    caller: &Caller,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let project = api
        .create_project(caller, serde_json::from_value(json!({"name": "bench"}))?)
        .await?;
    let template = api
        .create_template(
            caller,
            serde_json::from_value(json!({
                "name": "stack",
                "project_id": project.id,
                "repository": "https://github.com/acme/infrastructure.git",
                "iac_version": "1.0.3",
            }))?,
        )
        .await?;
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        let environment = api
            .create_environment(
                caller,
                serde_json::from_value(json!({
                    "name": format!("env-{index}"),
                    "project_id": project.id,
                    "template_id": template.id,
                }))?,
            )
            .await?;
        ids.push(environment.id);
    }
    Ok(ids)
}

/// One deployer instance fed by the event source mapping, until `done`.
async fn event_source_mapping(
    deployer: AwsPlatform,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    while !done.load(Ordering::Relaxed) {
        deliver_batch(
            &deployer.platform,
            deployer.queue.as_ref(),
            &sqs,
            &queue_url,
            1,
        )
        .await
        .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// What the runner of each task does before it exits: read its launch credential from
/// its environment file and trade it for its job, through the api's platform.
#[derive(Clone)]
struct Runner {
    api: Arc<Platform>,
    s3: aws_sdk_s3::Client,
}

impl Runner {
    async fn start(&self, task: &aws_sdk_ecs::types::Task) -> anyhow::Result<()> {
        let file = task
            .overrides()
            .and_then(|overrides| overrides.container_overrides().first())
            .and_then(|container| container.environment_files().first())
            .context("the task's environment file")?;
        let (bucket, key) = file
            .value()
            .strip_prefix("arn:aws:s3:::")
            .and_then(|path| path.split_once('/'))
            .context("an S3 object ARN")?;
        let object = self.s3.get_object().bucket(bucket).key(key).send().await?;
        let text = String::from_utf8(object.body.collect().await?.into_bytes().to_vec())?;
        let token = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{RUNNER_TOKEN_VARIABLE}=")))
            .context("the launch credential")?;
        let launch = self
            .api
            .authenticate_runner(token, &[TokenScope::Launch])
            .await?;
        self.api.start_session(&launch).await?;
        Ok(())
    }
}

/// Stops every task as soon as its runner started (traded its launch credential) and
/// hands the stop to task-events (each task on its own, as Fargate and EventBridge do),
/// until `expected` tasks have run; returns how many did.
async fn fargate(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task_events: &Arc<Platform>,
    runner: &Runner,
    expected: usize,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut seen = HashSet::new();
    let mut stopping = tokio::task::JoinSet::new();
    let mut stopped = 0;
    while stopped < expected {
        if Instant::now() > deadline {
            bail!("only {stopped} of {expected} deployments got a task in 30 minutes");
        }
        while let Some(result) = stopping.try_join_next() {
            result??;
            stopped += 1;
        }
        let running = ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(DesiredStatus::Running)
            .send()
            .await?
            .task_arns
            .unwrap_or_default();
        let new: Vec<String> = running
            .into_iter()
            .filter(|arn| seen.insert(arn.clone()))
            .collect();
        if new.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for arn in new {
            let (ecs, cluster, task_events, runner) = (
                ecs.clone(),
                cluster.to_string(),
                task_events.clone(),
                runner.clone(),
            );
            stopping.spawn(async move { stop(&ecs, &cluster, &task_events, &runner, &arn).await });
        }
    }
    Ok(stopped)
}

async fn stop(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task_events: &Platform,
    runner: &Runner,
    arn: &str,
) -> anyhow::Result<()> {
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(arn)
        .send()
        .await?;
    runner
        .start(described.tasks().first().context("the running task")?)
        .await?;
    let task = ecs
        .stop_task()
        .cluster(cluster)
        .task(arn)
        .reason("Essential container in task exited")
        .send()
        .await?
        .task
        .context("the stopped task")?;
    handle_task_state_change(task_events, task_state_change(&task, Some(0))).await?;
    Ok(())
}

/// How many tasks the cluster ran for each deployment, from every task's `startedBy`.
async fn tasks_by_deployment(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let mut next_token = None;
        loop {
            let page = ecs
                .list_tasks()
                .cluster(cluster)
                .desired_status(desired.clone())
                .set_next_token(next_token)
                .send()
                .await?;
            for chunk in page.task_arns().chunks(100) {
                let described = ecs
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(chunk.to_vec()))
                    .send()
                    .await?;
                for task in described.tasks() {
                    let deployment = task
                        .started_by()
                        .and_then(parse_started_by)
                        .map(|(id, _)| id.to_string())
                        .unwrap_or_default();
                    *counts.entry(deployment).or_insert(0) += 1;
                }
            }
            next_token = page.next_token;
            if next_token.is_none() {
                break;
            }
        }
    }
    Ok(counts)
}
