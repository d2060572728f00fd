//! A restart keeps every object, and the first start hands out the operator's key once.

use std::os::unix::fs::PermissionsExt;

use envplane_e2e::cli::Server;
use envplane_e2e::spawn_app;
use serde_json::json;

#[tokio::test]
async fn a_restart_keeps_everything() {
    let mut app = spawn_app().await;
    let key = app.admin_key.clone();
    let seeded = app.seed(&key, "keep").await;
    let deployer = app.key(&key, "deployer", None).await;
    app.put(
        "/v1/organization/variables/token",
        &key,
        json!({"value": "sealed-at-rest", "sensitive": true}),
    )
    .await
    .expect(201);
    let acme = app.organization("acme").await;
    let before = app
        .get(&format!("/v1/environments/{}", seeded.environment_id), &key)
        .await
        .expect(200);
    let audit_before = app
        .get("/v1/audit-events?limit=500", &key)
        .await
        .expect(200);

    app.restart().await;

    let after = app
        .get(
            &format!("/v1/environments/{}", seeded.environment_id),
            &deployer,
        )
        .await
        .expect(200);
    assert_eq!(before, after);
    let token = app
        .get("/v1/organization/variables/token", &key)
        .await
        .expect(200);
    assert_eq!(token["sensitive"], true);
    assert_eq!(
        app.get("/v1/organization", &acme).await.expect(200)["name"],
        "acme"
    );
    assert_eq!(
        app.get("/v1/audit-events?limit=500", &key)
            .await
            .expect(200),
        audit_before
    );
    app.get(&format!("/v1/templates/{}", seeded.template_id), &key)
        .await
        .expect(200);
    app.get(&format!("/v1/projects/{}", seeded.project_id), &key)
        .await
        .expect(200);
}

/// The real `envplane serve` binary: prints the admin key once, stores it 0600.
#[test]
fn serve_prints_the_admin_key_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let first = Server::start_in(data_dir.path());
    assert!(first.url.starts_with("http://127.0.0.1:"), "{}", first.url);
    let key_file = data_dir.path().join("admin-key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("epk_"));
    assert!(
        first.printed.contains(&key),
        "the first start prints the key: {}",
        first.printed
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let master = std::fs::metadata(data_dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(master & 0o777, 0o600);
    drop(first);

    let second = Server::start_in(data_dir.path());
    assert!(
        !second.printed.contains(&key),
        "a restart prints the key again: {}",
        second.printed
    );
    drop(second);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
}
