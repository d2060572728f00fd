//! Webhook handling latency in local mode (issue 13): from the request to the queued
//! deployments, signature check included, over ENVIRONMENTS environments of one
//! repository (TEMPLATES templates, one directory each), a delivery touching one
//! template's directory, so ENVIRONMENTS / TEMPLATES environments. Two events:
//! - `push` to `main` with continuous deployment on: an apply per touched environment;
//! - `pull_request` `synchronize`: a plan per touched environment, the previous
//!   commit's queued plans cancelled, the changed files read from GitHub and a pending
//!   status set per plan, all answered by the test kit's fake GitHub at once.
//!
//! Each request is a real HTTP request to `envplane serve`'s router on loopback, on the
//! SQLite store; nothing dispatches the queued deployments (no sandbox starts), so the
//! numbers are the webhook's own.
//!
//! Usage: webhook-latency [REQUESTS] [ENVIRONMENTS] [TEMPLATES]   (default 200 500 10)

use std::time::{Duration, Instant};

use anyhow::Context;
use envplane_bench::argument;
use envplane_core::auth::Caller;
use envplane_core::github::sign;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::Platform;
use envplane_local::LocalConfig;
use envplane_testkit::github::{FakeGitHub, APP_PRIVATE_KEY};
use serde_json::{json, Value};

const SECRET: &str = "the-webhook-secret-of-the-bench";
const APP_ID: u64 = 123456;
const INSTALLATION_ID: u64 = 45678901;
const REPOSITORY_URL: &str = "https://github.com/acme/infra.git";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests = argument(1, 200)?;
    let environments = argument(2, 500)?;
    let templates = argument(3, 10)?;
    let github = FakeGitHub::start().await;
    let data_dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/github", listener.local_addr()?);
    let mut config = LocalConfig::new(data_dir.path().to_path_buf(), url.clone());
    config.github_api_url = github.url.clone();
    // Not started: no dispatch loop, so queued deployments stay queued.
    let platform = envplane_local::open(config)?.platform;
    let caller = seed(&platform, environments, templates).await?;
    let touched = environments / templates;
    github.set_files("acme/infra", 17, &["stacks/t0/main.tf"]);
    let router = envplane_http::api_router(platform.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    println!(
        "{environments} environments over {templates} templates; each delivery touches {touched}"
    );

    let client = reqwest::Client::new();
    for event in ["push", "pull_request"] {
        let mut latencies = Vec::with_capacity(requests);
        for n in 0..requests {
            let body = payload(event, n);
            let started = Instant::now();
            let answer: Value = client
                .post(&url)
                .header("x-github-event", event)
                .header(
                    "x-github-delivery",
                    format!("{event}-{n}").replace('_', "-"),
                )
                .header("x-github-hook-installation-target-type", "integration")
                .header("x-github-hook-installation-target-id", APP_ID.to_string())
                .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
                .body(body)
                .send()
                .await?
                .json()
                .await?;
            latencies.push(started.elapsed());
            let queued = answer["deployments"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(queued == touched, "{event} {n} queued {queued}: {answer}");
        }
        report(event, &mut latencies);
    }
    drop(caller);
    Ok(())
}

fn payload(event: &str, n: usize) -> Vec<u8> {
    let commit = format!("{n:040x}");
    let repository = json!({
        "id": 683912345, "full_name": "acme/infra", "clone_url": REPOSITORY_URL,
        "ssh_url": "git@github.com:acme/infra.git", "html_url": "https://github.com/acme/infra",
    });
    let installation = json!({ "id": INSTALLATION_ID });
    let sender = json!({ "login": "octocat" });
    let body = match event {
        "push" => json!({
            "ref": "refs/heads/main", "after": commit, "deleted": false,
            "commits": [{ "added": [], "removed": [], "modified": ["stacks/t0/main.tf"] }],
            "repository": repository, "installation": installation, "sender": sender,
        }),
        _ => json!({
            "action": "synchronize",
            "pull_request": {
                "number": 17,
                "head": { "sha": commit, "ref": "change" },
                "base": { "sha": "0".repeat(40), "ref": "main" },
            },
            "repository": repository, "installation": installation, "sender": sender,
        }),
    };
    serde_json::to_vec(&body).expect("a payload serializes")
}

fn report(event: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |quantile: f64| {
        let index = ((latencies.len() as f64 * quantile).ceil() as usize).clamp(1, latencies.len());
        latencies[index - 1].as_secs_f64() * 1000.0
    };
    println!(
        "{event}: {} requests, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

async fn seed(
    platform: &Platform,
    environments: usize,
    templates: usize,
) -> anyhow::Result<Caller> {
    let key = platform
        .bootstrap()
        .await?
        .context("a fresh store bootstraps")?;
    let caller = platform.authenticate(key.expose_secret(), "bench").await?;
    platform
        .put_github_connection(
            &caller,
            serde_json::from_value(json!({
                "app_id": APP_ID, "installation_id": INSTALLATION_ID,
                "private_key": APP_PRIVATE_KEY, "webhook_secret": SECRET,
            }))?,
        )
        .await?;
    let project = platform
        .create_project(&caller, serde_json::from_value(json!({ "name": "bench" }))?)
        .await?;
    for t in 0..templates {
        let template = platform
            .create_template(
                &caller,
                serde_json::from_value(json!({
                    "name": format!("t{t}"), "project_id": project.id,
                    "repository": REPOSITORY_URL, "path": format!("stacks/t{t}"),
                    "iac_version": "1.0.3",
                }))?,
            )
            .await?;
        for e in 0..environments / templates {
            platform
                .create_environment(
                    &caller,
                    serde_json::from_value(json!({
                        "name": format!("t{t}-e{e}"), "project_id": project.id,
                        "template_id": template.id, "pull_request_plans": true,
                        "continuous_deployment": true,
                    }))?,
                )
                .await?;
        }
    }
    Ok(caller)
}
