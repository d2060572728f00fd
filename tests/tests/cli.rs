//! End to end: the `envplane` binary as a user runs it, against `envplane serve` on a
//! random port with a fresh data directory per test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the binary once per test run (a no-op when it is fresh) and returns its path.
fn envplane() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "envplane-cli",
                "--bin",
                "envplane",
            ])
            .current_dir(&workspace);
        // The variables cargo sets for this test would look like changes to the build
        // scripts that watch them (ring watches CARGO_MANIFEST_DIR) and rebuild them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_this_test = name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&name.as_ref());
            if set_for_this_test {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the envplane binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
        target.join("debug").join("envplane")
    })
}

/// A running `envplane serve`, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    url: String,
    admin_key: String,
    /// Every output of every CLI run, to check that a secret was never printed.
    transcript: Mutex<String>,
    _data_dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One finished CLI run.
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Server {
    fn start() -> Server {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(envplane())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("ENVPLANE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("envplane serve starts");
        // Read stdout on a thread: it keeps draining the pipe and lets us time out.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            admin_key: String::new(),
            transcript: Mutex::default(),
            _data_dir: data_dir,
        };
        server.url = loop {
            let line = received
                .recv_timeout(STARTUP_TIMEOUT)
                .expect("envplane serve prints its address");
            if let Some(address) = line.strip_prefix("envplane listening on ") {
                break address.trim().to_string();
            }
        };
        let key_file = server._data_dir.path().join("admin-key");
        server.admin_key = std::fs::read_to_string(key_file)
            .expect("serve saves the admin key")
            .trim()
            .to_string();
        server
    }

    /// Runs the CLI with the admin key; `stdin` is piped in when given.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_as(&self.admin_key, args, stdin)
    }

    fn run_as(&self, key: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = Command::new(envplane());
        command
            .args(args)
            .env("ENVPLANE_URL", &self.url)
            .env("ENVPLANE_LOG", "warn")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if key.is_empty() {
            command.env_remove("ENVPLANE_API_KEY");
        } else {
            command.env("ENVPLANE_API_KEY", key);
        }
        let mut child = command.spawn().expect("the CLI starts");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes())
                .expect("stdin takes the value");
        }
        let output = child.wait_with_output().expect("the CLI finishes");
        self.record(args, output)
    }

    fn record(&self, args: &[&str], output: Output) -> Run {
        let run = Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        };
        let mut transcript = self.transcript.lock().unwrap();
        transcript.push_str(&run.stdout);
        transcript.push_str(&run.stderr);
        drop(transcript);
        eprintln!(
            "$ envplane {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args, None);
        assert!(run.success, "envplane {args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a command that must succeed with `--output json` and parses its answer.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("--output json prints JSON")
    }

    /// Runs a command that must fail and returns its run.
    fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args, None);
        assert!(!run.success, "envplane {args:?} should have failed");
        run
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

/// A project with a template and an environment; answers their ids.
fn seed(server: &Server) -> (String, String, String) {
    let project = id(&server.json(&["project", "create", "payments"]));
    let template = id(&server.json(&[
        "template",
        "create",
        "network",
        "--project",
        &project,
        "--repository",
        "file:///tmp/x",
        "--iac-version",
        "1.9.5",
    ]));
    let environment = id(&server.json(&[
        "environment",
        "create",
        "staging",
        "--project",
        &project,
        "--template",
        &template,
        "--ttl",
        "8h",
    ]));
    (project, template, environment)
}

#[test]
fn projects_templates_and_environments_round_trip() {
    let server = Server::start();
    let (project, template, environment) = seed(&server);

    let projects = server.ok(&["project", "list"]);
    assert!(projects.contains(&project) && projects.contains("payments"));
    let shown = server.json(&["project", "show", &project]);
    assert_eq!(shown["name"], "payments");
    let updated = server.json(&[
        "project",
        "update",
        &project,
        "--description",
        "card payments",
    ]);
    assert_eq!(updated["description"], "card payments");

    let templates = server.ok(&["template", "list", "--project", &project]);
    assert!(templates.contains("network") && templates.contains("file:///tmp/x"));
    assert!(templates.contains("terraform 1.9.5"), "{templates}");
    let template_json = server.json(&["template", "show", &template]);
    assert_eq!(template_json["revision"], "main");
    let renamed = server.json(&["template", "update", &template, "--revision", "v2"]);
    assert_eq!(renamed["revision"], "v2");

    let table = server.ok(&["environment", "list", "--project", &project]);
    assert!(table.contains("staging") && table.contains("8h"), "{table}");
    let pinned = server.json(&[
        "environment",
        "update",
        &environment,
        "--revision",
        "v1",
        "--requires-approval",
        "true",
    ]);
    assert_eq!(pinned["revision"], "v1");
    assert_eq!(pinned["requires_approval"], true);
    let cleared = server.json(&[
        "environment",
        "update",
        &environment,
        "--follow-template",
        "--no-ttl",
    ]);
    assert_eq!(cleared["revision"], Value::Null);
    assert_eq!(cleared["ttl"], Value::Null);
    let shown = server.ok(&["environment", "show", &environment]);
    assert!(
        shown.contains("(template)") && shown.contains("required"),
        "{shown}"
    );

    let page = server.json(&["project", "list", "--limit", "1"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    assert!(server
        .ok(&["environment", "delete", &environment])
        .contains("Deleted environment"));
    server.ok(&["template", "delete", &template]);
    server.ok(&["project", "delete", &project]);
    let after = server.json(&["project", "list", "--all"]);
    assert_eq!(after["items"], serde_json::json!([]));
}

#[test]
fn sensitive_variables_from_stdin_are_never_printed() {
    let server = Server::start();
    let (project, _, environment) = seed(&server);
    let secret = "hunter2-5f1c9e";
    let scope = format!("environment:{environment}");

    let set = server.run(
        &[
            "variable",
            "set",
            "DB_PASSWORD",
            "--scope",
            &scope,
            "--sensitive",
        ],
        Some(&format!("{secret}\n")),
    );
    assert!(set.success, "{}", set.stderr);
    assert!(set.stdout.contains("***"), "{}", set.stdout);
    let dash = server.run(
        &[
            "variable",
            "set",
            "API_TOKEN",
            "-",
            "--scope",
            &scope,
            "--sensitive",
            "--env",
        ],
        Some(secret),
    );
    assert!(dash.success, "{}", dash.stderr);
    let region = format!("project:{project}");
    server.ok(&["variable", "set", "region", "eu-west-1", "--scope", &region]);

    let listing = server.json(&["variable", "list", "--scope", &scope]);
    let items = listing["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["sensitive"], true);
        assert_eq!(item["value"], Value::Null);
    }
    let table = server.ok(&["variable", "list", "--scope", &scope]);
    assert!(
        table.contains("DB_PASSWORD") && table.contains("***"),
        "{table}"
    );

    let effective = server.ok(&["variable", "list", "--scope", &scope, "--effective"]);
    assert!(effective.contains("eu-west-1") && effective.contains(&region));
    assert!(effective.contains("DB_PASSWORD"), "{effective}");
    let wrong = server.fails(&["variable", "list", "--scope", &region, "--effective"]);
    assert!(wrong.stderr.contains("--effective"), "{}", wrong.stderr);

    server.ok(&["variable", "delete", "API_TOKEN", "--scope", &scope]);
    server.ok(&["audit", "--all"]);

    let transcript = server.transcript.lock().unwrap();
    assert!(
        !transcript.contains(secret),
        "a sensitive value was printed"
    );
}

#[test]
fn api_keys_are_shown_once_and_revoked() {
    let server = Server::start();
    let (project, _, _) = seed(&server);

    let created = server.run(
        &[
            "api-key",
            "create",
            "ci",
            "--role",
            "deployer",
            "--project",
            &project,
        ],
        None,
    );
    assert!(created.success, "{}", created.stderr);
    assert!(created.stdout.contains("shown once"), "{}", created.stdout);
    let created = server.json(&["api-key", "create", "reader", "--role", "viewer"]);
    let key = created["key"].as_str().expect("the secret key").to_string();
    let key_id = id(&created);

    let projects = server.run_as(&key, &["project", "list"], None);
    assert!(projects.success && projects.stdout.contains("payments"));

    let keys = server.ok(&["api-key", "list"]);
    assert!(keys.contains("reader") && keys.contains("viewer") && keys.contains("deployer"));
    assert!(!keys.contains(&key), "a listing must not show secrets");
    let revoked = server.ok(&["api-key", "revoke", &key_id]);
    assert!(revoked.contains(&key_id));
    let refused = server.run_as(&key, &["project", "list"], None);
    assert!(!refused.success);
    assert!(refused.stderr.contains("HTTP 401"), "{}", refused.stderr);

    let refused_role = server.run_as(&key, &["audit"], None);
    assert!(!refused_role.success);

    let audit = server.ok(&["audit", "--limit", "50"]);
    for action in ["project.create", "api_key.create", "api_key.revoke"] {
        assert!(audit.contains(action), "{action} missing from\n{audit}");
    }
    let page = server.json(&["audit", "--limit", "2"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_string());
    let everything = server.json(&["audit", "--limit", "2", "--all"]);
    assert!(everything["items"].as_array().unwrap().len() > 2);
    assert_eq!(everything["next"], Value::Null);
}

#[test]
fn organizations_show_and_create() {
    let server = Server::start();
    let organization = server.json(&["organization", "show"]);
    assert!(organization["id"].is_string());
    let created = server.ok(&["organization", "create", "acme"]);
    assert!(
        created.contains("acme") && created.contains("shown once"),
        "{created}"
    );
    let admin_key = created
        .lines()
        .last()
        .expect("the admin key closes the output")
        .trim();
    let acme = server.run_as(admin_key, &["organization", "show", "-o", "json"], None);
    assert!(acme.success, "{}", acme.stderr);
    let acme: Value = serde_json::from_str(&acme.stdout).unwrap();
    assert_eq!(acme["name"], "acme");
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let server = Server::start();

    let missing = server.fails(&["project", "show", "prj_00000000000000000000000000"]);
    assert!(missing.stderr.starts_with("error: "), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("(not_found, HTTP 404)"),
        "{}",
        missing.stderr
    );

    let invalid = server.fails(&["project", "create", " "]);
    assert!(invalid.stderr.contains("HTTP 422"), "{}", invalid.stderr);

    let scope = server.fails(&["variable", "list", "--scope", "planet:mars"]);
    assert_eq!(scope.code, Some(2));
    assert!(scope.stderr.contains("project:ID"), "{}", scope.stderr);

    let no_changes = server.fails(&["environment", "update", "env_x"]);
    assert_eq!(no_changes.code, Some(2));

    let unreachable = server.fails(&["project", "list", "--url", "http://127.0.0.1:9"]);
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the envplane API at http://127.0.0.1:9"),
        "{}",
        unreachable.stderr
    );

    let no_key = server.run_as("", &["project", "list"], None);
    assert!(!no_key.success);
    assert!(
        no_key.stderr.contains("ENVPLANE_API_KEY"),
        "{}",
        no_key.stderr
    );

    let bad_key = server.run_as("epk_not_a_key", &["project", "list"], None);
    assert!(
        bad_key.stderr.contains("(unauthenticated, HTTP 401)"),
        "{}",
        bad_key.stderr
    );
}
