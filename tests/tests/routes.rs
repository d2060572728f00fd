//! The happy path of every route, as a user would walk through them.

use envplane_e2e::{spawn_app, template_body};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn health_and_openapi_need_no_key() {
    let app = spawn_app().await;
    let health = app
        .call(Method::GET, "/health", None, None)
        .await
        .expect(200);
    assert_eq!(health["status"], "ok");
    // One machine has no fixed egress addresses to publish; on AWS, infra/ sets them.
    let egress = app
        .call(Method::GET, "/v1/meta/egress-ips", None, None)
        .await
        .expect(200);
    assert_eq!(egress, json!({"addresses": []}));
    let document = app
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .expect(200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/organizations",
        "/v1/organization",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/projects",
        "/v1/projects/{id}",
        "/v1/templates",
        "/v1/templates/{id}",
        "/v1/environments",
        "/v1/environments/{id}",
        "/v1/organization/variables/{name}",
        "/v1/projects/{id}/variables/{name}",
        "/v1/templates/{id}/variables/{name}",
        "/v1/environments/{id}/variables",
        "/v1/audit-events",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn organizations_are_created_by_the_operator() {
    let app = spawn_app().await;
    let own = app
        .get("/v1/organization", &app.admin_key)
        .await
        .expect(200);
    assert_eq!(own["name"], "default");

    let created = app
        .post("/v1/organizations", &app.admin_key, json!({"name": "acme"}))
        .await
        .expect(201);
    assert_eq!(created["name"], "acme");
    assert_eq!(created["admin_key"]["role"], "admin");
    let acme_key = created["admin_key"]["key"].as_str().unwrap();
    let acme = app.get("/v1/organization", acme_key).await.expect(200);
    assert_eq!(acme["id"], created["id"]);

    // The new organization's admin is not the operator.
    app.post("/v1/organizations", acme_key, json!({"name": "other"}))
        .await
        .expect_error(403, "forbidden");
    app.post("/v1/organizations", &app.admin_key, json!({"name": "acme"}))
        .await
        .expect_error(409, "conflict");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revocable() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/api-keys",
            &app.admin_key,
            json!({"name": "ci", "role": "deployer"}),
        )
        .await
        .expect(201);
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("epk_"));
    assert!(key.starts_with(created["hint"].as_str().unwrap()));
    app.get("/v1/organization", &key).await.expect(200);

    let listed = app.get("/v1/api-keys", &app.admin_key).await.expect(200);
    let texts = listed.to_string();
    assert!(!texts.contains(&key), "a listing shows a key's secret");
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == id.as_str()));

    let revoked = app
        .delete(&format!("/v1/api-keys/{id}"), &app.admin_key)
        .await
        .expect(200);
    assert!(revoked["revoked_at"].is_string());
    app.get("/v1/organization", &key)
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn projects_templates_and_environments_round_trip() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let project = app
        .post(
            "/v1/projects",
            key,
            json!({"name": "payments", "description": "Payments team"}),
        )
        .await
        .expect(201);
    let project_id = project["id"].as_str().unwrap();
    for field in ["id", "created_at", "updated_at"] {
        assert!(project[field].is_string(), "{field}");
    }
    assert_eq!(
        app.get(&format!("/v1/projects/{project_id}"), key)
            .await
            .expect(200),
        project
    );
    let renamed = app
        .patch(
            &format!("/v1/projects/{project_id}"),
            key,
            json!({"name": "payments-eu", "description": null}),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "payments-eu");
    assert!(renamed["description"].is_null());
    let projects = app.get("/v1/projects", key).await.expect(200);
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert!(projects["next"].is_null());

    let template = app
        .post("/v1/templates", key, template_body(project_id, "web"))
        .await
        .expect(201);
    let template_id = template["id"].as_str().unwrap();
    assert_eq!(template["iac_version"], "1.0.3");
    assert_eq!(template["path"], "stacks/web");
    let template = app
        .patch(
            &format!("/v1/templates/{template_id}"),
            key,
            json!({"revision": "v2.1.0"}),
        )
        .await
        .expect(200);
    assert_eq!(template["revision"], "v2.1.0");
    let listed = app
        .get(&format!("/v1/templates?project_id={project_id}"), key)
        .await
        .expect(200);
    assert_eq!(listed["items"][0]["id"], template_id);
    app.get(&format!("/v1/templates/{template_id}"), key)
        .await
        .expect(200);

    let environment = app
        .post(
            "/v1/environments",
            key,
            json!({
                "name": "staging", "project_id": project_id, "template_id": template_id,
                "revision": "release-1", "requires_approval": true, "ttl": "8h",
                "schedules": {"drift": {"cron": "0 6 * * *", "time_zone": "Europe/Berlin"}}
            }),
        )
        .await
        .expect(201);
    let environment_id = environment["id"].as_str().unwrap();
    assert_eq!(environment["requires_approval"], true);
    assert_eq!(environment["ttl"], "8h");
    assert_eq!(
        environment["schedules"]["drift"]["time_zone"],
        "Europe/Berlin"
    );
    assert_eq!(environment["drift_status"], "unknown");
    let environment = app
        .patch(
            &format!("/v1/environments/{environment_id}"),
            key,
            json!({"revision": null, "ttl": null, "requires_approval": false}),
        )
        .await
        .expect(200);
    assert!(environment["revision"].is_null());
    assert!(environment["ttl"].is_null());
    let listed = app
        .get(&format!("/v1/environments?project_id={project_id}"), key)
        .await
        .expect(200);
    assert_eq!(listed["items"][0]["id"], environment_id);
    app.get(&format!("/v1/environments/{environment_id}"), key)
        .await
        .expect(200);

    // Deleting in use is refused; from the leaves up it works.
    app.delete(&format!("/v1/templates/{template_id}"), key)
        .await
        .expect_error(409, "conflict");
    app.delete(&format!("/v1/projects/{project_id}"), key)
        .await
        .expect_error(409, "conflict");
    app.delete(&format!("/v1/environments/{environment_id}"), key)
        .await
        .expect(204);
    app.delete(&format!("/v1/templates/{template_id}"), key)
        .await
        .expect(204);
    app.delete(&format!("/v1/projects/{project_id}"), key)
        .await
        .expect(204);
    app.get(&format!("/v1/projects/{project_id}"), key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn listings_page_with_cursors() {
    let app = spawn_app().await;
    for n in 0..7 {
        app.post(
            "/v1/projects",
            &app.admin_key,
            json!({"name": format!("p{n}")}),
        )
        .await
        .expect(201);
    }
    let mut names = Vec::new();
    let mut path = "/v1/projects?limit=3".to_string();
    loop {
        let page = app.get(&path, &app.admin_key).await.expect(200);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/projects?limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
}

#[tokio::test]
async fn variables_at_every_scope() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let seeded = app.seed(key, "vars").await;
    let scopes = seeded.scopes();
    for scope in &scopes {
        let path = format!("{scope}/variables/region");
        let created = app
            .put(
                &path,
                key,
                json!({"value": "eu-west-1", "sensitive": false, "kind": "terraform"}),
            )
            .await
            .expect(201);
        assert_eq!(created["value"], "eu-west-1");
        let updated = app
            .put(&path, key, json!({"value": "eu-central-1"}))
            .await
            .expect(200);
        assert_eq!(updated["value"], "eu-central-1");
        assert_eq!(
            app.get(&path, key).await.expect(200)["value"],
            "eu-central-1"
        );
        let listed = app
            .get(&format!("{scope}/variables"), key)
            .await
            .expect(200);
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
        app.delete(&path, key).await.expect(204);
        app.get(&path, key).await.expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn every_change_is_audited() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let seeded = app.seed(key, "audit").await;
    app.put(
        &format!("/v1/environments/{}/variables/token", seeded.environment_id),
        key,
        json!({"value": "s3cr3t-audit", "sensitive": true}),
    )
    .await
    .expect(201);
    app.delete(&format!("/v1/environments/{}", seeded.environment_id), key)
        .await
        .expect(204);

    let events = app.get("/v1/audit-events", key).await.expect(200);
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..5],
        [
            "environment.delete",
            "variable.create",
            "environment.create",
            "template.create",
            "project.create"
        ]
    );
    let newest = &events["items"][0];
    assert_eq!(newest["target_id"], seeded.environment_id.as_str());
    assert_eq!(newest["actor_name"], "default admin");
    assert!(newest["request_id"].as_str().unwrap().starts_with("req_"));
    assert!(newest["at"].is_string());
    assert!(!events.to_string().contains("s3cr3t-audit"));
}

/// The server names every request itself; a client's own id is kept beside it, checked.
#[tokio::test]
async fn request_ids_are_the_servers_and_a_clients_is_kept_apart() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let response = app
        .request(Method::POST, "/v1/projects")
        .bearer_auth(key)
        .header("x-request-id", "trace-42:a.b_c")
        .json(&json!({"name": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(echoed.starts_with("req_"), "{echoed}");
    let events = app.get("/v1/audit-events", key).await.expect(200);
    let newest = &events["items"][0];
    assert_eq!(newest["action"], "project.create");
    assert_eq!(newest["request_id"], echoed.as_str());
    assert_eq!(newest["client_request_id"], "trace-42:a.b_c");

    for bad in ["with space", "quote\"", &"x".repeat(129), "ünicode"] {
        let response = app
            .request(Method::GET, "/v1/projects")
            .bearer_auth(key)
            .header("x-request-id", bad.as_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        assert!(response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_"));
    }
}
