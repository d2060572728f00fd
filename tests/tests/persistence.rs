//! A restart keeps every object, and the first start hands out the operator's key once.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

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
    let binary = envplane_e2e::binary("envplane");
    let data_dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envplane serve");
        let mut printed = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let listening = line.starts_with("envplane listening on http://127.0.0.1:");
            printed.push(line);
            if listening {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        printed.join("\n")
    };

    let first = start();
    let key_file = data_dir.path().join("admin-key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("epk_"));
    assert!(
        first.contains(&key),
        "the first start prints the key: {first}"
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let master = std::fs::metadata(data_dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(master & 0o777, 0o600);

    let second = start();
    assert!(
        !second.contains(&key),
        "a restart prints the key again: {second}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
}
