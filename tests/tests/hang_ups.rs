//! Clients that hang up mid-request (a load tool stopping, a timeout, a closed laptop)
//! cost the server nothing: afterwards every route answers as before.

use envplane_e2e::{spawn_app, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `request` on a new connection and hangs up without reading the answer.
async fn send_and_hang_up(app: &TestApp, request: String) {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // Dropping the stream closes it while the server is still at work on the request.
}

fn get_request(path: &str, key: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: envplane\r\nauthorization: Bearer {key}\r\n\r\n")
}

fn post_request(path: &str, key: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: envplane\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Every GET route of the OpenAPI document, its parameters filled with the seeded
/// objects' ids (a deployment id that does not exist: 404 is an answer too).
fn get_routes(app_document: &Value, ids: &[(&str, &str)]) -> Vec<String> {
    let paths = app_document["paths"].as_object().unwrap();
    paths
        .iter()
        .filter(|(_, operations)| operations.get("get").is_some())
        .map(|(path, _)| {
            let owner = ids
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
                .map_or("none", |(_, id)| id);
            path.replace("{id}", owner)
                .replace("{name}", "fixture")
                .replace("{version}", "1")
        })
        .collect()
}

#[tokio::test]
async fn hundreds_of_abandoned_requests_leave_every_route_answering() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let seeded = app.seed(&key, "hang-ups").await;
    for scope in seeded.scopes() {
        app.put(
            &format!("{scope}/variables/fixture"),
            &key,
            json!({"value": "v"}),
        )
        .await
        .expect(201);
    }
    app.put(
        "/v1/organization/vcs/github",
        &key,
        json!({"token": "github_pat_of_the_tests", "webhook_secret": "a-webhook-secret-of-16"}),
    )
    .await
    .expect(200);
    // Nothing here ends a deployment: the target is never called.
    let target = app
        .post(
            "/v1/notification-targets",
            &key,
            json!({"project_id": seeded.project_id, "name": "ops", "kind": "slack",
                   "url": "https://hooks.slack.com/services/T0/B0/X", "events": ["deployment.failed"]}),
        )
        .await
        .expect(201);
    let target_id = target["id"].as_str().unwrap().to_string();
    let document = app
        .call(reqwest::Method::GET, "/v1/openapi.json", None, None)
        .await;
    let routes = get_routes(
        &document.body,
        &[
            ("/v1/projects/", &seeded.project_id),
            ("/v1/templates/", &seeded.template_id),
            ("/v1/environments/", &seeded.environment_id),
            ("/v1/deployments/", "dep_00000000000000000000000000"),
            ("/v1/notification-targets/", &target_id),
        ],
    );
    assert!(routes.len() > 15, "{routes:?}");

    let mut hang_ups = Vec::new();
    for n in 0..600 {
        let request = match n % 4 {
            0 => post_request("/v1/projects", &key, &json!({"name": format!("gone-{n}")})),
            _ => get_request(&routes[n % routes.len()], &key),
        };
        hang_ups.push(send_and_hang_up(&app, request));
    }
    join_all(hang_ups).await;

    // Every route answers, at a concurrency above the store's reader count.
    let mut checks = Vec::new();
    for round in 0..4 {
        for route in &routes {
            let (app, key) = (&app, &key);
            checks.push(async move {
                let reply = app.get(route, key).await;
                assert!(
                    reply.status.as_u16() < 500,
                    "round {round}: GET {route} answered {}: {}",
                    reply.status,
                    reply.text
                );
                if !route.contains("dep_") && !route.contains("state-versions/") {
                    assert_eq!(reply.status.as_u16(), 200, "GET {route}: {}", reply.text);
                }
            });
        }
    }
    join_all(checks).await;
    app.post("/v1/projects", &key, json!({"name": "after-hang-ups"}))
        .await
        .expect(201);
}
