//! End to end: the `envplane` binary as a user runs it, against `envplane serve` on a
//! random port with a fresh data directory per test.

use envplane_e2e::cli::{id, Server};
use serde_json::Value;

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
        "https://github.com/acme/network.git",
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
    assert!(
        templates.contains("network") && templates.contains("https://github.com/acme/network.git")
    );
    assert!(templates.contains("terraform 1.9.5"), "{templates}");
    let template_json = server.json(&["template", "show", &template]);
    assert_eq!(template_json["revision"], "main");
    let renamed = server.json(&["template", "update", &template, "--revision", "v2"]);
    assert_eq!(renamed["revision"], "v2");

    let table = server.ok(&["environment", "list", "--project", &project]);
    assert!(table.contains("staging"), "{table}");
    let expiring = server.json(&["environment", "show", &environment]);
    assert_eq!(expiring["ttl"], "8h");
    assert!(expiring["expires_at"].is_string(), "{expiring}");
    let scheduled = server.json(&[
        "environment",
        "update",
        &environment,
        "--deploy-cron",
        "0 8 * * 1-5",
        "--deploy-time-zone",
        "Europe/Berlin",
        "--destroy-cron",
        "0 20 * * 1-5",
    ]);
    assert_eq!(scheduled["schedules"]["deploy"]["cron"], "0 8 * * 1-5");
    assert_eq!(
        scheduled["schedules"]["deploy"]["time_zone"],
        "Europe/Berlin"
    );
    assert_eq!(scheduled["schedules"]["destroy"]["time_zone"], "UTC");
    let table = server.ok(&["environment", "list", "--project", &project]);
    assert!(table.contains("Europe/Berlin"), "{table}");
    let bad_calendar = server.fails(&[
        "environment",
        "update",
        &environment,
        "--deploy-cron",
        "daily",
    ]);
    assert!(
        bad_calendar.stderr.contains("five-field"),
        "{}",
        bad_calendar.stderr
    );
    let extended = server.json(&["environment", "ttl", &environment, "--ttl", "2d"]);
    assert_eq!(extended["ttl"], "2d");
    let unscheduled = server.json(&["environment", "update", &environment, "--no-schedules"]);
    assert_eq!(unscheduled["schedules"]["deploy"], Value::Null);
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
    let watched = server.json(&[
        "environment",
        "update",
        &environment,
        "--drift-cron",
        "0 6 * * *",
        "--monthly-budget",
        "250",
        "--tag-resources",
        "true",
    ]);
    assert_eq!(watched["schedules"]["drift"]["cron"], "0 6 * * *");
    assert_eq!(watched["monthly_budget"], 250.0);
    assert_eq!(watched["tag_resources"], true);
    let costs = server.ok(&["environment", "costs", &environment]);
    assert!(
        costs.contains("no bill read yet") && costs.contains("250.00 a month, 0.0% used"),
        "{costs}"
    );
    let bad_month = server.fails(&["environment", "costs", &environment, "--month", "2026-13"]);
    assert!(
        bad_month.stderr.contains("HTTP 422"),
        "{}",
        bad_month.stderr
    );
    let unbudgeted = server.json(&["environment", "update", &environment, "--no-budget"]);
    assert_eq!(unbudgeted["monthly_budget"], Value::Null);

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

    assert!(
        !server.transcript().contains(secret),
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

#[test]
fn github_connections_take_secrets_from_files_and_never_print_them() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let key = files.path().join("app.pem");
    let secret = files.path().join("webhook-secret");
    std::fs::write(&key, envplane_testkit::github::APP_PRIVATE_KEY).unwrap();
    std::fs::write(&secret, "a-webhook-secret-of-the-cli\n").unwrap();
    let (key, secret) = (key.to_str().unwrap(), secret.to_str().unwrap());
    let connected = server.json(&[
        "github",
        "connect",
        "--app-id",
        "123456",
        "--installation-id",
        "45678901",
        "--private-key-file",
        key,
        "--webhook-secret-file",
        secret,
    ]);
    assert_eq!(connected["mode"], "app");
    assert_eq!(connected["installation_id"], 45678901);
    let shown = server.ok(&["github", "show"]);
    assert!(shown.contains("app") && shown.contains("123456"), "{shown}");
    let (project, template, _) = seed(&server);
    let environment = server.json(&[
        "environment",
        "create",
        "review",
        "--project",
        &project,
        "--template",
        &template,
        "--pull-request-plans",
        "--watch-path",
        "modules/**",
    ]);
    assert_eq!(environment["pull_request_plans"], true);
    assert_eq!(environment["watch_paths"][0], "modules/**");
    server.ok(&["github", "disconnect"]);
    let gone = server.fails(&["github", "show"]);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    let transcript = server.transcript();
    assert!(!transcript.contains("PRIVATE KEY") && !transcript.contains("a-webhook-secret"));
}

#[test]
fn notification_targets_are_added_listed_and_deleted() {
    let server = Server::start();
    let (project, _, _) = seed(&server);
    let created = server.ok(&[
        "notification-target",
        "create",
        "ops",
        "--project",
        &project,
        "--kind",
        "webhook",
        "--target-url",
        "https://hooks.example.com/envplane",
        "--event",
        "deployment.failed",
        "--event",
        "environment.expired",
    ]);
    assert!(created.contains("shown once"), "{created}");
    let slack = server.json(&[
        "notification-target",
        "create",
        "chat",
        "--project",
        &project,
        "--kind",
        "slack",
        "--target-url",
        "https://hooks.slack.com/services/T0/B0/SECRET",
        "--event",
        "deployment.succeeded",
    ]);
    assert_eq!(slack["secret"], Value::Null);
    let table = server.ok(&["notification-target", "list", "--project", &project]);
    assert!(
        table.contains("https://hooks.slack.com") && !table.contains("SECRET"),
        "{table}"
    );
    let refused = server.fails(&[
        "notification-target",
        "create",
        "metadata",
        "--project",
        &project,
        "--kind",
        "webhook",
        "--target-url",
        "https://169.254.169.254/latest",
        "--event",
        "deployment.failed",
    ]);
    assert!(refused.stderr.contains("public host"), "{}", refused.stderr);
    let id = id(&slack);
    server.ok(&["notification-target", "delete", &id]);
    server.fails(&["notification-target", "show", &id]);
}
