//! Variables merge nearer-wins, and a sensitive value is write-only: no response shows
//! it and the database file never holds it in plaintext.

use envplane_e2e::spawn_app;
use serde_json::{json, Value};

fn by_name<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {listing}"))
}

#[tokio::test]
async fn nearer_scopes_win() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let seeded = app.seed(key, "merge").await;
    let scopes = [
        ("organization", "/v1/organization".to_string()),
        ("project", format!("/v1/projects/{}", seeded.project_id)),
        ("template", format!("/v1/templates/{}", seeded.template_id)),
        (
            "environment",
            format!("/v1/environments/{}", seeded.environment_id),
        ),
    ];
    // `level_N` is set at the first N+1 scopes, so its effective value names scope N.
    for (depth, (scope_name, path)) in scopes.iter().enumerate() {
        for level in depth..scopes.len() {
            app.put(
                &format!("{path}/variables/level_{level}"),
                key,
                json!({"value": format!("from {scope_name}"), "kind": "env"}),
            )
            .await
            .expect(201);
        }
    }
    let effective = app
        .get(
            &format!(
                "/v1/environments/{}/variables?effective=true",
                seeded.environment_id
            ),
            key,
        )
        .await
        .expect(200);
    assert_eq!(effective["items"].as_array().unwrap().len(), 4);
    for (level, (scope_name, _)) in scopes.iter().enumerate() {
        let variable = by_name(&effective, &format!("level_{level}"));
        assert_eq!(variable["value"], format!("from {scope_name}"));
        assert_eq!(variable["scope"], *scope_name);
        assert_eq!(variable["kind"], "env");
    }
    // The merged listing pages by name like any other.
    let effective_path = format!(
        "/v1/environments/{}/variables?effective=true&limit=3",
        seeded.environment_id
    );
    let first = app.get(&effective_path, key).await.expect(200);
    let names = |page: &Value| -> Vec<String> {
        let items = page["items"].as_array().unwrap();
        items
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first), ["level_0", "level_1", "level_2"]);
    assert_eq!(first["next"], "level_2");
    let rest = app
        .get(&format!("{effective_path}&cursor=level_2"), key)
        .await
        .expect(200);
    assert_eq!(names(&rest), ["level_3"]);
    assert!(rest["next"].is_null());
    app.get(&format!("{effective_path}&cursor=%C2%8C"), key)
        .await
        .expect_error(422, "validation_failed");
    // Another environment of the same template does not see this environment's values.
    let other = app
        .post(
            "/v1/environments",
            key,
            json!({"name": "other", "project_id": seeded.project_id, "template_id": seeded.template_id}),
        )
        .await
        .expect(201);
    let other_effective = app
        .get(
            &format!(
                "/v1/environments/{}/variables?effective=true",
                other["id"].as_str().unwrap()
            ),
            key,
        )
        .await
        .expect(200);
    assert_eq!(
        by_name(&other_effective, "level_3")["value"],
        "from template"
    );
}

#[tokio::test]
async fn sensitive_values_never_come_back() {
    let app = spawn_app().await;
    let key = &app.admin_key;
    let seeded = app.seed(key, "secret").await;
    let secrets = [
        "pa55-organization-Zq1",
        "pa55-project-Zq2",
        "pa55-template-Zq3",
        "pa55-environment-Zq4",
    ];
    let scopes = seeded.scopes();
    let mut responses = Vec::new();
    for ((scope, secret), suffix) in scopes.iter().zip(secrets).zip(["org", "prj", "tpl", "env"]) {
        let path = format!("{scope}/variables/db_password_{suffix}");
        let created = app
            .put(&path, key, json!({"value": secret, "sensitive": true}))
            .await
            .expect(201);
        assert!(created["value"].is_null());
        assert_eq!(created["sensitive"], true);
        responses.push(created);
        responses.push(app.get(&path, key).await.expect(200));
        responses.push(
            app.get(&format!("{scope}/variables"), key)
                .await
                .expect(200),
        );
        // Updating keeps it write-only too.
        responses.push(
            app.put(&path, key, json!({"value": secret, "sensitive": true}))
                .await
                .expect(200),
        );
    }
    responses.push(
        app.get(
            &format!(
                "/v1/environments/{}/variables?effective=true",
                seeded.environment_id
            ),
            key,
        )
        .await
        .expect(200),
    );
    responses.push(app.get("/v1/audit-events?limit=500", key).await.expect(200));
    let all = serde_json::to_string(&responses).unwrap();
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} appeared in a response");
    }

    // Nor is it anywhere in the database files, WAL included.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("envplane.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("db_password_env"),
        "the database holds the variables"
    );
    assert!(
        stored.contains("\"sealed\":\"v1:"),
        "the values are stored sealed"
    );
    for secret in secrets {
        assert!(!stored.contains(secret), "{secret} is stored in plaintext");
    }
}
