//! The test kit for end-to-end tests: an envplane on a random loopback port with a fresh
//! data directory, driven over real HTTP; [`cli`] drives the real binaries instead.

pub mod aws;
pub mod cli;
pub mod kit;
pub mod network;
pub mod testcloud;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use envplane_core::service::Quotas;
use envplane_local::LocalConfig;

use axum::body::Bytes;
use axum::http::HeaderMap;
use envplane_core::secrecy::ExposeSecret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: SocketAddr,
    /// The default organization's admin key, also the operator's key.
    pub admin_key: String,
    pub data_dir: TempDir,
    client: reqwest::Client,
    server: JoinHandle<()>,
    quotas: Quotas,
    github_api_url: Option<String>,
    configure: Option<Configure>,
}

/// Changes a test makes to the installation's configuration, at each (re)start.
pub type Configure = Arc<dyn Fn(&mut LocalConfig) + Send + Sync>;

/// A response: status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The body, after checking the status; panics with the body otherwise.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {}",
            self.text
        );
        self.body
    }

    /// Checks an error reply: status, the JSON error format, and its code.
    pub fn expect_error(self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {}",
            self.text
        );
        assert_eq!(self.body["error"]["code"], code, "{}", self.text);
        self.body["error"]["message"].as_str().unwrap().to_string()
    }
}

/// How long a test waits for something that must happen. It only decides how long a real
/// failure takes to report, so it is generous: a fresh machine is a cold machine (the
/// first Terraform start, the first emulator call).
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Calls `check` every 50 ms until it returns `Ok`. After [`PATIENCE`] it panics, naming
/// `what` did not happen and what the last `Err` said was seen instead.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if std::time::Instant::now() >= deadline => {
                panic!("{what} did not happen within {PATIENCE:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_quotas(Quotas::default()).await
}

/// An app whose deployments get `quotas`.
pub async fn spawn_app_with_quotas(quotas: Quotas) -> TestApp {
    spawn(quotas, None).await
}

/// An app whose GitHub API is at `github_api_url` (the test kit's fake).
pub async fn spawn_app_with_github(github_api_url: &str) -> TestApp {
    spawn(Quotas::default(), Some(github_api_url.to_string())).await
}

/// An app whose configuration `configure` changes.
pub async fn spawn_app_configured(configure: Configure) -> TestApp {
    spawn_with(Quotas::default(), None, Some(configure)).await
}

async fn spawn(quotas: Quotas, github_api_url: Option<String>) -> TestApp {
    spawn_with(quotas, github_api_url, None).await
}

async fn spawn_with(
    quotas: Quotas,
    github_api_url: Option<String>,
    configure: Option<Configure>,
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let (address, server, admin_key) = serve(
        data_dir.path(),
        &quotas,
        github_api_url.as_deref(),
        configure.as_ref(),
    )
    .await;
    TestApp {
        address,
        admin_key: admin_key.expect("a fresh data directory bootstraps"),
        data_dir,
        client: reqwest::Client::new(),
        server,
        quotas,
        github_api_url,
        configure,
    }
}

async fn serve(
    data_dir: &Path,
    quotas: &Quotas,
    github_api_url: Option<&str>,
    configure: Option<&Configure>,
) -> (SocketAddr, JoinHandle<()>, Option<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = LocalConfig::new(data_dir.to_path_buf(), format!("http://{address}"));
    config.runner_binary = binary("envplane-runner");
    config.tools_dir = tools_dir();
    config.local_repositories = Some(repositories_dir());
    config.quotas = quotas.clone();
    // The tests' notification targets listen on loopback.
    config.allow_private_notification_targets = true;
    if let Some(url) = github_api_url {
        config.github_api_url = url.to_string();
    }
    if let Some(configure) = configure {
        configure(&mut config);
    }
    let installation = envplane_local::open(config).expect("open the installation");
    let (platform, background) = installation.start().await.expect("start the installation");
    let admin_key = platform
        .bootstrap()
        .await
        .expect("bootstrap")
        .map(|key| key.expose_secret().to_string());
    let router = envplane_http::api_router(platform);
    let server = tokio::spawn(async move {
        let _background = background;
        axum::serve(listener, router).await.unwrap();
    });
    (address, server, admin_key)
}

/// The directory the test servers share with sandboxes (`--local-repos`): every
/// [`git_repository`] is made inside it, and no data directory is.
pub fn repositories_dir() -> PathBuf {
    let dir = target_dir().join("test-repositories");
    std::fs::create_dir_all(&dir).expect("the test repositories directory");
    // Resolved: a file:// repository names a plain path (no `..`) inside it.
    dir.canonicalize().expect("the test repositories directory")
}

/// Where the test script installs Terraform: `<dir>/terraform/<version>/terraform`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("ENVPLANE_TEST_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("tools"))
}

/// The workspace's target directory (a relative `CARGO_TARGET_DIR` is taken from the
/// workspace root, where [`binary`] runs cargo).
fn target_dir() -> PathBuf {
    let workspace = workspace_dir();
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir))
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl TestApp {
    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        let (address, server, admin_key) = serve(
            self.data_dir.path(),
            &self.quotas,
            self.github_api_url.as_deref(),
            self.configure.as_ref(),
        )
        .await;
        assert!(admin_key.is_none(), "a restart must not bootstrap again");
        self.address = address;
        self.server = server;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends `body` (if any) as JSON with `key` as the bearer key.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.expect("request sent")).await
    }

    /// Sends a raw body with a JSON content type.
    pub async fn call_raw(&self, method: Method, path: &str, key: &str, body: Vec<u8>) -> Reply {
        let request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body);
        reply(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// A project, a template in it and an environment of that template; returns their ids.
    pub async fn seed(&self, key: &str, name: &str) -> Seeded {
        let environment = json!({ "name": format!("{name}-env") });
        self.create_environment(
            key,
            name,
            |project_id| template_body(project_id, &format!("{name}-tpl")),
            environment,
        )
        .await
    }

    /// Creates a project named `name`, a template (`template(project_id)` as body) and
    /// an environment (`environment` plus the ids).
    async fn create_environment(
        &self,
        key: &str,
        name: &str,
        template: impl FnOnce(&str) -> Value,
        mut environment: Value,
    ) -> Seeded {
        let project = self
            .post("/v1/projects", key, json!({ "name": name }))
            .await
            .expect(201);
        let project_id = project["id"].as_str().unwrap().to_string();
        let template = self
            .post("/v1/templates", key, template(&project_id))
            .await
            .expect(201);
        let template_id = template["id"].as_str().unwrap().to_string();
        environment["project_id"] = json!(project_id);
        environment["template_id"] = json!(template_id);
        let environment = self
            .post("/v1/environments", key, environment)
            .await
            .expect(201);
        Seeded {
            project_id,
            template_id,
            environment_id: environment["id"].as_str().unwrap().to_string(),
        }
    }

    /// A new API key with `role`, organization-wide or for one project.
    pub async fn key(&self, admin_key: &str, role: &str, project_id: Option<&str>) -> String {
        let created = self
            .post(
                "/v1/api-keys",
                admin_key,
                json!({ "name": format!("{role} key"), "role": role, "project_id": project_id }),
            )
            .await
            .expect(201);
        created["key"].as_str().unwrap().to_string()
    }

    /// A second organization and its admin key.
    pub async fn organization(&self, name: &str) -> String {
        let created = self
            .post(
                "/v1/organizations",
                &self.admin_key,
                json!({ "name": name }),
            )
            .await
            .expect(201);
        created["admin_key"]["key"].as_str().unwrap().to_string()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Seeded {
    pub project_id: String,
    pub template_id: String,
    pub environment_id: String,
}

impl Seeded {
    /// The four variable scopes, widest first: organization, project, template,
    /// environment (each a path that `/variables` follows).
    pub fn scopes(&self) -> [String; 4] {
        [
            "/v1/organization".to_string(),
            format!("/v1/projects/{}", self.project_id),
            format!("/v1/templates/{}", self.template_id),
            format!("/v1/environments/{}", self.environment_id),
        ]
    }
}

pub fn template_body(project_id: &str, name: &str) -> Value {
    json!({
        "name": name,
        "project_id": project_id,
        "repository": "https://github.com/acme/infrastructure.git",
        "revision": "main",
        "path": "stacks/web",
        "iac_type": "terraform",
        "iac_version": "1.0.3"
    })
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    Reply { status, body, text }
}

impl TestApp {
    /// Posts a body without any content type; returns status and text.
    pub async fn client_without_content_type(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
    ) -> (u16, String) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .expect("request sent");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    /// Sends a GET with a raw `Authorization` header; returns the status.
    /// A request to build by hand (headers the helpers above do not send).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn raw_authorization(&self, path: &str, authorization: &str) -> u16 {
        let response = self
            .client
            .get(self.url(path))
            .header("authorization", authorization)
            .send()
            .await
            .expect("request sent");
        response.status().as_u16()
    }
}

/// The path of a workspace binary (`envplane`, `envplane-runner` or the tests' provider
/// `terraform-provider-testcloud`), built once per test run (a no-op when they are
/// fresh): tests of one package cannot depend on another package's binaries directly.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let directory = BUILT.get_or_init(|| {
        let mut build = std::process::Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "envplane-cli",
                "-p",
                "envplane-runner",
                "-p",
                "envplane-testcloud",
                "--bins",
            ])
            .current_dir(workspace_dir());
        // The variables cargo sets for this test package would look like changes to the
        // build scripts that watch them (ring watches CARGO_MANIFEST_DIR) and rebuild
        // them, invalidating the outer build. Cargo's own settings (CARGO_HOME,
        // CARGO_TARGET_DIR, ...) and RUSTUP_*, PATH stay.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_this_test = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref());
            if set_for_this_test {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the envplane binaries failed");
        target_dir().join("debug")
    });
    directory.join(name)
}

/// A Git repository (branch `main`) with `files` committed, for templates to point at.
pub fn git_repository(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir_in(repositories_dir()).expect("repository directory");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args([
                "-c",
                "user.email=tests@envplane.dev",
                "-c",
                "user.name=tests",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?} failed");
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "--message", "fixture"]);
    dir
}

/// A Terraform configuration that needs no provider: variables, locals and outputs.
pub const GREETING_CONFIG: &str = r#"
variable "greeting" {
  type    = string
  default = "hello"
}

variable "password" {
  type      = string
  sensitive = true
  default   = "unset"
}

locals {
  message = "${var.greeting} world"
}

output "message" {
  value = local.message
}

output "password" {
  value     = var.password
  sensitive = true
}
"#;

impl TestApp {
    /// A project, a template on `repository` and an environment; returns their ids.
    pub async fn environment_on(
        &self,
        repository: &TempDir,
        name: &str,
        requires_approval: bool,
    ) -> Seeded {
        let repository = format!("file://{}", repository.path().display());
        let template = |project_id: &str| json!({ "name": name, "project_id": project_id, "repository": repository, "iac_version": "1.0.3" });
        // The tests' one admin key both requests and approves.
        let environment = json!({
            "name": name,
            "requires_approval": requires_approval,
            "allow_self_approval": requires_approval,
        });
        self.create_environment(&self.admin_key, name, template, environment)
            .await
    }

    /// An environment (and its project and template) on a new repository of `files`,
    /// one deployment of `action` on it, waited for until it ends; answers it.
    pub async fn deploy_until_done(
        &self,
        files: &[(&str, &str)],
        name: &str,
        action: &str,
    ) -> Value {
        let repository = git_repository(files);
        let seeded = self.environment_on(&repository, name, false).await;
        let id = self.deploy(&seeded.environment_id, action).await;
        self.wait_for(&id, &["succeeded", "failed", "cancelled"])
            .await
    }

    /// Queues a deployment; returns its id.
    pub async fn deploy(&self, environment_id: &str, action: &str) -> String {
        let deployment = self
            .post(
                &format!("/v1/environments/{environment_id}/deployments"),
                &self.admin_key,
                json!({ "action": action }),
            )
            .await
            .expect(202);
        assert_eq!(deployment["status"], "queued");
        deployment["id"].as_str().unwrap().to_string()
    }

    /// Polls the deployment until it has a step named `step`.
    pub async fn wait_for_step(&self, deployment_id: &str, step: &str) -> Value {
        eventually(&format!("the {step} step starting"), || async {
            let deployment = self.deployment(deployment_id).await;
            let started = deployment["steps"]
                .as_array()
                .is_some_and(|steps| steps.iter().any(|s| s["name"] == step));
            started
                .then_some(deployment.clone())
                .ok_or_else(|| deployment.to_string())
        })
        .await
    }

    /// Polls the deployment until its status is one of `statuses`.
    pub async fn wait_for(&self, deployment_id: &str, statuses: &[&str]) -> Value {
        eventually(&format!("the deployment becoming {statuses:?}"), || async {
            let deployment = self.deployment(deployment_id).await;
            let reached = statuses
                .iter()
                .any(|status| deployment["status"] == *status);
            reached
                .then_some(deployment.clone())
                .ok_or_else(|| deployment.to_string())
        })
        .await
    }

    async fn deployment(&self, deployment_id: &str) -> Value {
        self.get(&format!("/v1/deployments/{deployment_id}"), &self.admin_key)
            .await
            .expect(200)
    }

    /// Waits until the dispatcher has taken every message off the deployment queue, so
    /// what it decided about each has been decided.
    pub async fn wait_until_dispatched(&self) {
        let database = self.data_dir.path().join(envplane_local::DATABASE_FILE);
        let queue = envplane_local::SqliteQueue::open(&database).expect("the deployment queue");
        eventually("the deployment queue emptying", || async {
            match queue.depth().await.expect("the queue's depth") {
                0 => Ok(()),
                depth => Err(format!("{depth} messages")),
            }
        })
        .await
    }

    /// The deployment's whole log, in order.
    pub async fn logs(&self, deployment_id: &str) -> String {
        let mut text = String::new();
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(seq) => format!("/v1/deployments/{deployment_id}/logs?limit=500&after={seq}"),
                None => format!("/v1/deployments/{deployment_id}/logs?limit=500"),
            };
            let page = self.get(&path, &self.admin_key).await.expect(200);
            let items = page["items"].as_array().unwrap();
            if items.is_empty() {
                return text;
            }
            for chunk in items {
                text.push_str(chunk["text"].as_str().unwrap());
            }
            after = page["last_seq"].as_u64();
        }
    }

    /// Sets a variable on an environment.
    pub async fn set_variable(&self, environment_id: &str, name: &str, body: Value) {
        let reply = self
            .put(
                &format!("/v1/environments/{environment_id}/variables/{name}"),
                &self.admin_key,
                body,
            )
            .await;
        assert!(reply.status.is_success(), "{}", reply.text);
    }
}

/// What a loopback target received: each request's signature header and body, recorded
/// as it arrives.
pub type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A target on loopback whose calls answer `statuses` in turn (then 200), the first
/// after `first_delay`.
pub async fn notification_target(statuses: Vec<u16>, first_delay: Duration) -> (String, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (seen, calls, statuses) = (seen.clone(), calls.clone(), statuses.clone());
        async move {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let signature = headers
                .get("x-envplane-signature-256")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            seen.lock().unwrap().push((signature, body.to_vec()));
            if call == 0 {
                tokio::time::sleep(first_delay).await;
            }
            StatusCode::from_u16(statuses.get(call).copied().unwrap_or(200)).unwrap()
        }
    };
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}
