//! GitHub end to end in local mode, with real Terraform and the test kit's fake GitHub
//! API: verified webhooks, plans of pull requests, one living comment, commit statuses.

use envplane_core::github::sign;
use envplane_e2e::{eventually, git_repository, spawn_app_with_github, TestApp};
use envplane_testkit::github::{FakeGitHub, APP_PRIVATE_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

const APP_ID: u64 = 123456;
const INSTALLATION_ID: u64 = 45678901;
const SECRET: &str = "the-webhook-secret-of-these-tests";
/// Sensitive in envplane, not in Terraform: the plan prints it, the sandbox masks it.
const SENSITIVE: &str = "s3cret-token-value-42";
const REPOSITORY: &str = "acme/infra";

const CONFIG: &str = r#"
variable "token" {
  type = string
}

output "echo" {
  value = "the token is ${var.token}"
}
"#;

struct Setup {
    app: TestApp,
    github: FakeGitHub,
    repository: TempDir,
    environment_id: String,
}

async fn setup() -> Setup {
    let github = FakeGitHub::start().await;
    let app = spawn_app_with_github(&github.url).await;
    let repository = git_repository(&[("stacks/app/main.tf", CONFIG), ("README.md", "# infra\n")]);
    let key = &app.admin_key;
    let project = app
        .post("/v1/projects", key, json!({ "name": "infra" }))
        .await
        .expect(201);
    let template = app
        .post(
            "/v1/templates",
            key,
            json!({
                "name": "app",
                "project_id": project["id"],
                "repository": format!("file://{}", repository.path().display()),
                "path": "stacks/app",
                "iac_version": "1.0.3",
            }),
        )
        .await
        .expect(201);
    let environment = app
        .post(
            "/v1/environments",
            key,
            json!({
                "name": "staging",
                "project_id": project["id"],
                "template_id": template["id"],
                "requires_approval": true,
                "allow_self_approval": true,
                "pull_request_plans": true,
            }),
        )
        .await
        .expect(201);
    let environment_id = environment["id"].as_str().unwrap().to_string();
    app.put(
        &format!("/v1/environments/{environment_id}/variables/token"),
        key,
        json!({ "value": SENSITIVE, "sensitive": true }),
    )
    .await
    .expect(201);
    let connection = app
        .put(
            "/v1/organization/vcs/github",
            key,
            json!({
                "app_id": APP_ID,
                "installation_id": INSTALLATION_ID,
                "private_key": APP_PRIVATE_KEY,
                "webhook_secret": SECRET,
            }),
        )
        .await
        .expect(200);
    assert_eq!(connection["mode"], "app");
    assert!(!connection.to_string().contains("PRIVATE KEY"));
    // The file that concerns the environment on the third page of the changed files.
    let mut changed: Vec<String> = (0..230).map(|n| format!("docs/page-{n}.md")).collect();
    changed.push("stacks/app/main.tf".into());
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    github.set_files(REPOSITORY, 17, &changed);
    Setup {
        app,
        github,
        repository,
        environment_id,
    }
}

fn git(repository: &TempDir, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args([
            "-c",
            "user.email=tests@envplane.dev",
            "-c",
            "user.name=tests",
        ])
        .args(args)
        .current_dir(repository.path())
        .output()
        .expect("run git");
    assert!(output.status.success(), "git {args:?} failed");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A new commit on the pull request's branch; answers its hash.
fn push_commit(repository: &TempDir, note: &str) -> String {
    std::fs::write(repository.path().join("stacks/app/note.txt"), note).unwrap();
    git(repository, &["add", "--all"]);
    git(repository, &["commit", "--quiet", "--message", note]);
    git(repository, &["rev-parse", "HEAD"])
}

/// A payload of `events/github/` as it is.
fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/github/").to_string() + name;
    std::fs::read(path).unwrap()
}

/// A fixture of `events/github/`, pointed at the test repository and `commit`.
fn payload(name: &str, repository: &TempDir, commit: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture(name)).unwrap();
    body["repository"]["clone_url"] = json!(format!("file://{}", repository.path().display()));
    if body.get("pull_request").is_some() {
        body["pull_request"]["head"]["sha"] = json!(commit);
    }
    serde_json::to_vec(&body).unwrap()
}

/// Posts a delivery as GitHub does; answers the status and the body.
async fn deliver(
    app: &TestApp,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = app
        .request(Method::POST, "/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-github-hook-installation-target-id", APP_ID.to_string())
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn signed(app: &TestApp, event: &str, delivery: &str, body: &[u8]) -> Value {
    let (status, answer) = deliver(
        app,
        event,
        delivery,
        body,
        Some(sign(SECRET.as_bytes(), body)),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer
}

async fn deployments(app: &TestApp, environment_id: &str) -> Vec<Value> {
    let listing = app
        .get(
            &format!("/v1/environments/{environment_id}/deployments"),
            &app.admin_key,
        )
        .await
        .expect(200);
    listing["items"].as_array().unwrap().clone()
}

fn queued(answer: &Value) -> Vec<String> {
    answer["deployments"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|id| id.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn only_signed_deliveries_are_read_and_each_is_handled_once() {
    let Setup {
        app,
        github,
        repository,
        environment_id,
    } = setup().await;
    let head = git(&repository, &["rev-parse", "HEAD"]);
    let body = payload("pull_request_opened.json", &repository, &head);
    let wrong = sign(b"another-secret-entirely", &body);
    let sha1 = sign(SECRET.as_bytes(), &body).replacen("sha256=", "sha1=", 1);
    for signature in [None, Some(wrong), Some(sha1), Some("sha256=".into())] {
        let (status, _) = deliver(&app, "pull_request", "d-unsigned", &body, signature).await;
        assert_eq!(status, 401);
    }
    assert!(deployments(&app, &environment_id).await.is_empty());
    assert!(
        github.calls().is_empty(),
        "nothing unverified reaches GitHub"
    );

    let ping = fixture("ping.json");
    assert_eq!(
        signed(&app, "ping", "d-ping", &ping).await["result"],
        "ignored"
    );

    // Malformed JSON after a valid signature is the sender's error.
    let (status, _) = deliver(
        &app,
        "pull_request",
        "d-malformed",
        b"{not json",
        Some(sign(SECRET.as_bytes(), b"{not json")),
    )
    .await;
    assert_eq!(status, 400);

    let first = signed(&app, "pull_request", "d-opened", &body).await;
    assert_eq!(queued(&first).len(), 1, "{first}");
    let again = signed(&app, "pull_request", "d-opened", &body).await;
    assert_eq!(again["result"], "duplicate");
    assert_eq!(deployments(&app, &environment_id).await.len(), 1);
}

#[tokio::test]
async fn a_pull_request_is_planned_and_reported_in_one_living_comment() {
    let Setup {
        app,
        github,
        repository,
        environment_id,
    } = setup().await;
    git(
        &repository,
        &["checkout", "--quiet", "-b", "bigger-instances"],
    );
    let first_commit = push_commit(&repository, "first");
    // GitHub fails the first call (the installation token): it is tried again.
    github.fail_next(1, 500);
    let body = payload("pull_request_opened.json", &repository, &first_commit);
    let answer = signed(&app, "pull_request", "d-1", &body).await;
    let [plan] = queued(&answer).try_into().expect("one plan");
    let done = app.wait_for(&plan, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["action"], "plan");
    assert_eq!(done["trigger"]["kind"], "pull_request");
    let comment = eventually("the pull request's comment shows the plan", || async {
        match github.comments().as_slice() {
            [comment] if comment.body.contains("planned") => Ok(comment.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(comment.number, 17);
    let audit = app
        .get("/v1/audit-events", &app.admin_key)
        .await
        .expect(200);
    let planned = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["action"] == "pull_request.plan")
        .expect("the delivery's audit event");
    assert_eq!(planned["actor_name"], "octocat (GitHub)");
    assert_eq!(planned["request_id"], "d-1");
    let pages = github
        .calls()
        .into_iter()
        .filter(|call| call.path.contains("/pulls/17/files"))
        .count();
    assert_eq!(pages, 3, "every page of the changed files was read");
    assert!(comment.body.contains("staging"), "{}", comment.body);
    assert!(comment.body.contains("<details>"), "{}", comment.body);
    assert!(comment.body.contains("the token is"), "{}", comment.body);
    let statuses = github.statuses();
    let states: Vec<&str> = statuses
        .iter()
        .filter(|(_, commit, _)| *commit == first_commit)
        .map(|(_, _, body)| body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"pending"), "{statuses:?}");
    assert_eq!(states.last(), Some(&"success"), "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|(_, _, b)| b["context"] == "envplane/staging"));

    // A person's apply waits for approval and holds the environment: the next plans queue.
    let held = app.deploy(&environment_id, "apply").await;
    app.wait_for(&held, &["waiting_for_approval"]).await;
    let second_commit = push_commit(&repository, "second");
    let body = payload("pull_request_synchronize.json", &repository, &second_commit);
    let [superseded] = queued(&signed(&app, "pull_request", "d-2", &body).await)
        .try_into()
        .expect("one plan");
    let third_commit = push_commit(&repository, "third");
    let body = payload("pull_request_synchronize.json", &repository, &third_commit);
    let [latest] = queued(&signed(&app, "pull_request", "d-3", &body).await)
        .try_into()
        .expect("one plan");
    let cancelled = app.wait_for(&superseded, &["cancelled"]).await;
    assert!(
        cancelled["reason"].as_str().unwrap().contains("superseded"),
        "{cancelled}"
    );
    app.post(
        &format!("/v1/deployments/{held}/reject"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect(200);
    let done = app.wait_for(&latest, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    eventually(
        "the same comment shows the latest commit's plan",
        || async {
            match github.comments().as_slice() {
                [comment]
                    if comment.body.contains(&third_commit[..12])
                        && comment.body.contains("planned") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // A change elsewhere in the repository plans nothing.
    github.set_files(REPOSITORY, 17, &["docs/guide.md"]);
    let fourth_commit = push_commit(&repository, "fourth");
    let body = payload("pull_request_synchronize.json", &repository, &fourth_commit);
    assert!(queued(&signed(&app, "pull_request", "d-4", &body).await).is_empty());

    // A comment command from someone who cannot write to the repository plans nothing.
    github.set_permission("mallory", "read");
    let comment = fixture("issue_comment.json");
    let before = deployments(&app, &environment_id).await.len();
    signed(&app, "issue_comment", "d-5", &comment).await;
    assert_eq!(deployments(&app, &environment_id).await.len(), before);

    // The sensitive value never reached GitHub: not the comment, a status or any call.
    for call in github.calls() {
        assert!(!call.body.contains(SENSITIVE), "{call:?}");
        assert!(!call.path.contains(SENSITIVE), "{call:?}");
    }
    assert_eq!(github.comments().len(), 1);
}

#[tokio::test]
async fn a_writer_plans_again_from_a_comment_and_closing_cancels_what_waits() {
    let Setup {
        app,
        github,
        repository,
        environment_id,
    } = setup().await;
    let head = git(&repository, &["rev-parse", "HEAD"]);
    let body = payload("pull_request_opened.json", &repository, &head);
    let [first] = queued(&signed(&app, "pull_request", "d-1", &body).await)
        .try_into()
        .expect("one plan");
    app.wait_for(&first, &["succeeded"]).await;
    let held = app.deploy(&environment_id, "apply").await;
    app.wait_for(&held, &["waiting_for_approval"]).await;

    // The permission check meets GitHub's rate limit once: it is tried again.
    github.set_permission("mallory", "write");
    github.fail_next(1, 403);
    let comment = fixture("issue_comment.json");
    let [again] = queued(&signed(&app, "issue_comment", "d-2", &comment).await)
        .try_into()
        .expect("one plan");
    let permission_calls = github
        .calls()
        .into_iter()
        .filter(|call| call.path.ends_with("/collaborators/mallory/permission"))
        .count();
    assert_eq!(permission_calls, 2, "the rate-limited call was tried again");
    assert_eq!(
        app.wait_for(&again, &["queued"]).await["revision"],
        head.as_str()
    );

    // Any other /envplane comment gets the list of commands, in a reply of its own.
    let mut unknown: Value = serde_json::from_slice(&comment).unwrap();
    unknown["comment"]["body"] = json!("/envplane apply");
    signed(
        &app,
        "issue_comment",
        "d-3",
        &serde_json::to_vec(&unknown).unwrap(),
    )
    .await;
    assert!(github
        .comments()
        .iter()
        .any(|c| c.body.contains("/envplane plan <environment>")));

    let closed = payload("pull_request_closed.json", &repository, &head);
    signed(&app, "pull_request", "d-4", &closed).await;
    let cancelled = app.wait_for(&again, &["cancelled"]).await;
    assert!(
        cancelled["reason"].as_str().unwrap().contains("closed"),
        "{cancelled}"
    );
    app.post(
        &format!("/v1/deployments/{held}/reject"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn a_push_to_the_branch_of_an_environment_with_continuous_deployment_applies() {
    let Setup {
        app,
        repository,
        environment_id,
        ..
    } = setup().await;
    let head = git(&repository, &["rev-parse", "HEAD"]);
    let mut push: Value =
        serde_json::from_slice(&payload("push.json", &repository, &head)).unwrap();
    push["after"] = json!(head);
    let push = serde_json::to_vec(&push).unwrap();
    // Off by default: the push deploys nothing.
    assert!(queued(&signed(&app, "push", "d-1", &push).await).is_empty());
    app.patch(
        &format!("/v1/environments/{environment_id}"),
        &app.admin_key,
        json!({ "continuous_deployment": true, "requires_approval": false }),
    )
    .await
    .expect(200);
    let [apply] = queued(&signed(&app, "push", "d-2", &push).await)
        .try_into()
        .expect("one apply");
    let done = app.wait_for(&apply, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["action"], "apply");
    assert_eq!(done["trigger"]["kind"], "push");
    let audit = app
        .get("/v1/audit-events", &app.admin_key)
        .await
        .expect(200);
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|event| event["action"] == "push.deploy" && event["target_id"] == head.as_str()));
    assert_eq!(done["commit"], head.as_str());
    let environment = app
        .get(
            &format!("/v1/environments/{environment_id}"),
            &app.admin_key,
        )
        .await
        .expect(200);
    let echo = environment["outputs"]["echo"].to_string();
    assert!(echo.contains("the token is"), "{environment}");

    // A push to another branch, or touching other paths, deploys nothing.
    let mut elsewhere: Value = serde_json::from_slice(&push).unwrap();
    elsewhere["ref"] = json!("refs/heads/feature");
    let elsewhere = serde_json::to_vec(&elsewhere).unwrap();
    assert!(queued(&signed(&app, "push", "d-3", &elsewhere).await).is_empty());
    let mut docs: Value = serde_json::from_slice(&push).unwrap();
    docs["commits"][0]["modified"] = json!(["docs/guide.md"]);
    let docs = serde_json::to_vec(&docs).unwrap();
    assert!(queued(&signed(&app, "push", "d-4", &docs).await).is_empty());
}

#[tokio::test]
async fn bodies_beyond_githubs_limit_are_refused() {
    let Setup { app, .. } = setup().await;
    let body = vec![b' '; envplane_core::github::MAX_WEBHOOK_BYTES + 1];
    let (status, _) = deliver(
        &app,
        "push",
        "d-big",
        &body,
        Some(sign(SECRET.as_bytes(), &body)),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_pull_request_from_a_fork_is_planned_at_its_head_commit() {
    let Setup {
        app, repository, ..
    } = setup().await;
    // The head commit is on no branch: only refs/pull/17/head holds it, as on GitHub.
    git(&repository, &["checkout", "--quiet", "-b", "fork"]);
    let head = push_commit(&repository, "from a fork");
    git(&repository, &["update-ref", "refs/pull/17/head", &head]);
    git(&repository, &["checkout", "--quiet", "main"]);
    git(&repository, &["branch", "--quiet", "-D", "fork"]);
    let body = payload("pull_request_opened.json", &repository, &head);
    let [plan] = queued(&signed(&app, "pull_request", "d-fork", &body).await)
        .try_into()
        .expect("one plan");
    let done = app.wait_for(&plan, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["commit"], head.as_str());
}

#[tokio::test]
async fn a_late_delivery_of_an_older_commit_does_not_replace_the_newer_plan() {
    let Setup {
        app,
        repository,
        environment_id,
        ..
    } = setup().await;
    let held = app.deploy(&environment_id, "apply").await;
    app.wait_for(&held, &["waiting_for_approval"]).await;
    let older = push_commit(&repository, "older");
    let newer = push_commit(&repository, "newer");
    let body = payload("pull_request_synchronize.json", &repository, &newer);
    let [plan] = queued(&signed(&app, "pull_request", "d-newer", &body).await)
        .try_into()
        .expect("one plan");
    // GitHub sent the older commit's event first; it arrives last.
    let mut late: Value = serde_json::from_slice(&payload(
        "pull_request_synchronize.json",
        &repository,
        &older,
    ))
    .unwrap();
    late["pull_request"]["updated_at"] = json!("2026-11-30T10:30:00Z");
    let late = serde_json::to_vec(&late).unwrap();
    assert!(queued(&signed(&app, "pull_request", "d-older", &late).await).is_empty());
    let still = app
        .get(&format!("/v1/deployments/{plan}"), &app.admin_key)
        .await
        .expect(200);
    assert_eq!(still["status"], "queued", "{still}");
    app.post(
        &format!("/v1/deployments/{held}/reject"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect(200);
    let done = app.wait_for(&plan, &["succeeded", "failed"]).await;
    assert_eq!(done["commit"], newer.as_str());
}
