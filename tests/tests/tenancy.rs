//! Two organizations never see or touch each other's objects: another organization's
//! object answers 404, exactly like a missing one.

use envplane_e2e::{spawn_app, template_body};
use serde_json::json;

#[tokio::test]
async fn organizations_are_isolated() {
    let app = spawn_app().await;
    let default = app.admin_key.clone();
    let acme = app.organization("acme").await;
    let theirs = app.seed(&default, "shared-name").await;
    // Names are per organization: acme may use the same ones.
    let mine = app.seed(&acme, "shared-name").await;
    app.put(
        &format!("/v1/environments/{}/variables/token", theirs.environment_id),
        &default,
        json!({"value": "default-only"}),
    )
    .await
    .expect(201);

    let missing = app
        .get("/v1/projects/prj_doesnotexist", &acme)
        .await
        .expect_error(404, "not_found");
    let foreign_paths = [
        format!("/v1/projects/{}", theirs.project_id),
        format!("/v1/templates/{}", theirs.template_id),
        format!("/v1/environments/{}", theirs.environment_id),
        format!("/v1/environments/{}/variables", theirs.environment_id),
        format!(
            "/v1/environments/{}/variables?effective=true",
            theirs.environment_id
        ),
        format!("/v1/environments/{}/variables/token", theirs.environment_id),
        format!("/v1/projects/{}/variables", theirs.project_id),
    ];
    for path in &foreign_paths {
        let message = app.get(path, &acme).await.expect_error(404, "not_found");
        assert!(message.ends_with("not found"), "{message}");
    }
    assert_eq!(missing, "project not found");

    app.patch(
        &format!("/v1/projects/{}", theirs.project_id),
        &acme,
        json!({"name": "stolen"}),
    )
    .await
    .expect_error(404, "not_found");
    app.delete(
        &format!("/v1/environments/{}", theirs.environment_id),
        &acme,
    )
    .await
    .expect_error(404, "not_found");
    app.put(
        &format!("/v1/environments/{}/variables/token", theirs.environment_id),
        &acme,
        json!({"value": "overwrite"}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/v1/templates",
        &acme,
        template_body(&theirs.project_id, "intruder"),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/v1/environments",
        &acme,
        json!({"name": "x", "project_id": mine.project_id, "template_id": theirs.template_id}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/v1/api-keys",
        &acme,
        json!({"name": "x", "role": "viewer", "project_id": theirs.project_id}),
    )
    .await
    .expect_error(404, "not_found");

    // Listings show only the caller's own organization.
    for (key, own) in [(&acme, &mine), (&default, &theirs)] {
        let projects = app.get("/v1/projects", key).await.expect(200);
        let ids: Vec<_> = projects["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect();
        assert_eq!(ids, [json!(own.project_id)]);
        let environments = app.get("/v1/environments", key).await.expect(200);
        assert_eq!(environments["items"].as_array().unwrap().len(), 1);
    }
    let foreign_filter = app
        .get(
            &format!("/v1/environments?project_id={}", theirs.project_id),
            &acme,
        )
        .await
        .expect(200);
    assert_eq!(foreign_filter["items"], json!([]));
    let audit = app
        .get("/v1/audit-events?limit=500", &acme)
        .await
        .expect(200);
    assert!(!audit.to_string().contains(&theirs.project_id));
    let keys = app.get("/v1/api-keys", &acme).await.expect(200);
    assert!(keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["operator"] == false));

    // Nothing of the default organization changed.
    let environment = app
        .get(
            &format!("/v1/environments/{}", theirs.environment_id),
            &default,
        )
        .await
        .expect(200);
    assert_eq!(environment["name"], "shared-name-env");
    let token = app
        .get(
            &format!("/v1/environments/{}/variables/token", theirs.environment_id),
            &default,
        )
        .await
        .expect(200);
    assert_eq!(token["value"], "default-only");
}
