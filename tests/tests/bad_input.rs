//! Every bad input gets a 4xx with the JSON error body, and nothing changes.

use envplane_e2e::{spawn_app, template_body, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// The number of projects, templates, environments and audit events: "nothing changed".
async fn snapshot(app: &TestApp) -> Value {
    let key = &app.admin_key;
    json!([
        app.get("/v1/projects?limit=500", key).await.body,
        app.get("/v1/templates?limit=500", key).await.body,
        app.get("/v1/environments?limit=500", key).await.body,
        app.get("/v1/audit-events?limit=500", key).await.body,
    ])
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let seeded = app.seed(&key, "base").await;
    let before = snapshot(&app).await;

    let raw =
        |body: &str| app.call_raw(Method::POST, "/v1/projects", &key, body.as_bytes().to_vec());
    raw("{\"name\": ").await.expect_error(400, "bad_request");
    raw("not json").await.expect_error(400, "bad_request");
    raw("").await.expect_error(400, "bad_request");
    raw("[]").await.expect_error(422, "validation_failed");
    raw("{\"name\": \"x\", \"owner\": \"y\"}")
        .await
        .expect_error(422, "validation_failed");
    raw("{}").await.expect_error(422, "validation_failed");
    raw("{\"name\": 42}")
        .await
        .expect_error(422, "validation_failed");

    let long = "x".repeat(129);
    app.post("/v1/projects", &key, json!({"name": long}))
        .await
        .expect_error(422, "validation_failed");
    app.post("/v1/projects", &key, json!({"name": "   "}))
        .await
        .expect_error(422, "validation_failed");

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    raw(&huge).await.expect_error(413, "payload_too_large");

    let no_type = app
        .client_without_content_type("/v1/projects", &key, b"{\"name\": \"x\"}".to_vec())
        .await;
    assert_eq!(no_type.0, 415, "{}", no_type.1);

    let put_wrong = app
        .put(
            &format!("/v1/environments/{}/variables/x", seeded.environment_id),
            &key,
            json!({"value": 123456789, "sensitive": true}),
        )
        .await;
    let message = put_wrong.expect_error(422, "validation_failed");
    assert!(
        !message.contains("123456789"),
        "the error echoes the value: {message}"
    );
    // Every variable reaches the sandbox as an environment variable, which cannot hold NUL.
    let nul = app
        .put(
            &format!("/v1/environments/{}/variables/x", seeded.environment_id),
            &key,
            json!({"value": "a\u{0}b"}),
        )
        .await
        .expect_error(422, "validation_failed");
    assert!(nul.contains("NUL"), "{nul}");

    assert_eq!(before, snapshot(&app).await);
}

/// Variable names that would take over the runner are refused at every scope, naming the
/// rule; so are sensitive values too short to mask.
#[tokio::test]
async fn variables_that_would_hijack_the_runner_are_refused() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let seeded = app.seed(&key, "hijack").await;
    let before = snapshot(&app).await;
    let scopes = seeded.scopes();
    for scope in &scopes {
        for (name, rule) in [
            ("PATH", "PATH"),
            ("LD_PRELOAD", "LD_*"),
            ("TF_LOG", "TF_LOG*"),
            ("TF_CLI_ARGS_apply", "TF_CLI_*"),
            ("TF_HTTP_PASSWORD", "TF_HTTP_*"),
            ("https_proxy", "*_PROXY"),
            ("GIT_SSH_COMMAND", "GIT_*"),
            ("ENVPLANE_RUNNER_TOKEN", "ENVPLANE_*"),
        ] {
            let message = app
                .put(
                    &format!("{scope}/variables/{name}"),
                    &key,
                    json!({"value": "x", "kind": "env"}),
                )
                .await
                .expect_error(422, "validation_failed");
            assert!(message.contains(rule), "{name} at {scope}: {message}");
        }
        let message = app
            .put(
                &format!("{scope}/variables/pin"),
                &key,
                json!({"value": "123", "sensitive": true}),
            )
            .await
            .expect_error(422, "validation_failed");
        assert!(message.contains("at least 4"), "{message}");
        assert!(
            !message.contains("123"),
            "the error echoes the value: {message}"
        );
    }
    assert_eq!(before, snapshot(&app).await);
    // The same names are fine for Terraform variables (they arrive as TF_VAR_<name>).
    app.put(
        &format!("{}/variables/PATH", scopes[3]),
        &key,
        json!({"value": "x", "kind": "terraform"}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn field_rules_are_enforced() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let seeded = app.seed(&key, "base").await;
    let before = snapshot(&app).await;

    // A file:// repository only inside the directory the operator shares.
    let shared = envplane_e2e::repositories_dir().display().to_string();
    let data_dir = format!("file://{}", app.data_dir.path().display());
    let climbing = format!("file://{shared}/../../..");
    for repository in [
        "http://github.com/acme/infra.git",
        "git://github.com/acme/infra.git",
        "ftp://example.com/x",
        "/srv/repo",
        "file:///etc",
        &data_dir,
        &climbing,
    ] {
        let mut body = template_body(&seeded.project_id, "bad");
        body["repository"] = json!(repository);
        let message = app
            .post("/v1/templates", &key, body)
            .await
            .expect_error(422, "validation_failed");
        assert!(message.contains("repository"), "{message}");
    }
    for (field, value) in [
        ("iac_version", json!("latest")),
        ("iac_type", json!("pulumi")),
        ("revision", json!("--upload-pack=evil")),
        ("path", json!("../../etc")),
        ("project_id", json!(7)),
    ] {
        let mut body = template_body(&seeded.project_id, "bad");
        body[field] = value;
        app.post("/v1/templates", &key, body)
            .await
            .expect_error(422, "validation_failed");
    }
    let mut missing = template_body(&seeded.project_id, "bad");
    missing.as_object_mut().unwrap().remove("repository");
    app.post("/v1/templates", &key, missing)
        .await
        .expect_error(422, "validation_failed");

    let environment = |extra: Value| {
        let mut body = json!({"name": "e", "project_id": seeded.project_id, "template_id": seeded.template_id});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for extra in [
        json!({"ttl": "forever"}),
        json!({"drift": {"cron": "* * * * *"}}),
        json!({"requires_approval": "yes"}),
        json!({"schedules": {"deploy": {"cron": "every day"}}}),
        json!({"schedules": {"deploy": {"cron": "0 8 * * *", "time_zone": "CEST"}}}),
        json!({"schedules": {"destroy": {"cron": "0 0 31 2 *"}}}),
        json!({"schedules": {"destroy": {"cron": "0 20 * * *", "zone": "UTC"}}}),
        json!({"schedules": {"drift": {"cron": "*/0 * * * *"}}}),
        json!({"auto_remediate_drift": "yes"}),
        json!({"schedules": [null, null]}),
        json!({"schedules": {"deploy": ["0 8 * * *", "UTC"]}}),
    ] {
        app.post("/v1/environments", &key, environment(extra))
            .await
            .expect_error(422, "validation_failed");
    }
    app.post(
        "/v1/environments",
        &key,
        environment(json!({"template_id": "tpl_missing"})),
    )
    .await
    .expect_error(404, "not_found");
    let ttl = format!("/v1/environments/{}/ttl", seeded.environment_id);
    for body in [
        json!({}),
        json!({"ttl": "8h", "expires_at": "2030-01-01T00:00:00Z"}),
        json!({"expires_at": "2001-01-01T00:00:00Z"}),
        json!({"expires_at": "tomorrow"}),
        json!({"ttl": 8}),
        json!({"ttl": "8h", "extend": true}),
    ] {
        app.post(&ttl, &key, body)
            .await
            .expect_error(422, "validation_failed");
    }
    let variable = format!("/v1/environments/{}/variables", seeded.environment_id);
    app.put(&format!("{variable}/1bad"), &key, json!({"value": "x"}))
        .await
        .expect_error(422, "validation_failed");
    app.put(
        &format!("{variable}/has-dash"),
        &key,
        json!({"value": "x", "kind": "env"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.put(
        &format!("{variable}/ok"),
        &key,
        json!({"value": "x", "kind": "secret"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.put(
        &format!("{variable}/big"),
        &key,
        json!({"value": "x".repeat(65 * 1024)}),
    )
    .await
    .expect_error(422, "validation_failed");

    // Names are unique within their parent.
    app.post("/v1/projects", &key, json!({"name": "base"}))
        .await
        .expect_error(409, "conflict");
    app.post(
        "/v1/templates",
        &key,
        template_body(&seeded.project_id, "base-tpl"),
    )
    .await
    .expect_error(409, "conflict");

    app.get("/v1/projects?limit=0", &key)
        .await
        .expect_error(422, "validation_failed");
    app.get("/v1/projects?limit=abc", &key)
        .await
        .expect_error(400, "bad_request");
    app.get("/v1/projects?cursor=%%%", &key)
        .await
        .expect_error(422, "validation_failed");
    app.get("/v1/projects?cursor=!!", &key)
        .await
        .expect_error(422, "validation_failed");
    app.get("/v1/projects?colour=blue", &key)
        .await
        .expect_error(400, "bad_request");

    assert_eq!(before, snapshot(&app).await);
}

#[tokio::test]
async fn unknown_ids_and_routes_are_404() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    for path in [
        "/v1/projects/prj_missing",
        "/v1/templates/tpl_missing",
        "/v1/environments/env_missing",
        "/v1/projects/prj_missing/variables",
        "/v1/environments/env_missing/variables?effective=true",
        "/v1/organization/variables/nothing",
        "/v1/nothing-here",
    ] {
        app.get(path, key).await.expect_error(404, "not_found");
    }
    app.patch("/v1/projects/prj_missing", key, json!({"name": "x"}))
        .await
        .expect_error(404, "not_found");
    app.delete("/v1/api-keys/key_missing", key)
        .await
        .expect_error(404, "not_found");
    app.call(Method::PUT, "/v1/projects", Some(key), Some(json!({})))
        .await
        .expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn missing_wrong_and_revoked_keys_are_401() {
    let app = spawn_app().await;
    app.call(Method::GET, "/v1/projects", None, None)
        .await
        .expect_error(401, "unauthenticated");
    app.get("/v1/projects", "epk_0000")
        .await
        .expect_error(401, "unauthenticated");
    app.get("/v1/projects", "")
        .await
        .expect_error(401, "unauthenticated");
    let raw = app
        .raw_authorization("/v1/projects", "Basic dXNlcjpwYXNz")
        .await;
    assert_eq!(raw, 401);
    // 401 comes before any look at the body.
    app.call(
        Method::POST,
        "/v1/projects",
        Some("epk_0000"),
        Some(json!({"bad": true})),
    )
    .await
    .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn nobody_grants_more_than_they_hold() {
    let app = spawn_app().await;
    let seeded = app.seed(&app.admin_key, "base").await;
    let project_admin = app
        .key(&app.admin_key, "admin", Some(&seeded.project_id))
        .await;
    // A project admin cannot make an organization-wide key.
    app.post(
        "/v1/api-keys",
        &project_admin,
        json!({"name": "x", "role": "viewer"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        "/v1/api-keys",
        &project_admin,
        json!({"name": "x", "role": "viewer", "project_id": seeded.project_id}),
    )
    .await
    .expect(201);
    let deployer = app.key(&app.admin_key, "deployer", None).await;
    app.post(
        "/v1/api-keys",
        &deployer,
        json!({"name": "x", "role": "admin"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        "/v1/api-keys",
        &app.admin_key,
        json!({"name": "x", "role": "owner"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        "/v1/api-keys",
        &app.admin_key,
        json!({"name": "x", "role": "viewer", "project_id": "prj_missing"}),
    )
    .await
    .expect_error(404, "not_found");
}
