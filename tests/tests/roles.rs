//! The role matrix: each role against each mutating route, organization-wide and
//! project-scoped.

use envplane_e2e::{spawn_app, template_body, Seeded, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const ROLES: [&str; 4] = ["viewer", "planner", "deployer", "admin"];

/// A mutating route, the least role it needs, and how to call it on fresh objects.
struct Route {
    name: &'static str,
    needs: &'static str,
    request: fn(&Seeded, &str) -> (Method, String, Option<Value>),
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            name: "create api key",
            needs: "admin",
            request: |_, _| {
                (
                    Method::POST,
                    "/v1/api-keys".into(),
                    Some(json!({"name": "k", "role": "viewer"})),
                )
            },
        },
        Route {
            name: "revoke api key",
            needs: "admin",
            request: |_, victim| (Method::DELETE, format!("/v1/api-keys/{victim}"), None),
        },
        Route {
            name: "create project",
            needs: "admin",
            request: |s, _| {
                (
                    Method::POST,
                    "/v1/projects".into(),
                    Some(json!({"name": format!("new-{}", s.project_id)})),
                )
            },
        },
        Route {
            name: "update project",
            needs: "admin",
            request: |s, _| {
                (
                    Method::PATCH,
                    format!("/v1/projects/{}", s.project_id),
                    Some(json!({"description": "x"})),
                )
            },
        },
        Route {
            name: "delete project",
            needs: "admin",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/projects/{}", s.project_id),
                    None,
                )
            },
        },
        Route {
            name: "create template",
            needs: "admin",
            request: |s, _| {
                (
                    Method::POST,
                    "/v1/templates".into(),
                    Some(template_body(&s.project_id, "second")),
                )
            },
        },
        Route {
            name: "update template",
            needs: "admin",
            request: |s, _| {
                (
                    Method::PATCH,
                    format!("/v1/templates/{}", s.template_id),
                    Some(json!({"revision": "v2"})),
                )
            },
        },
        Route {
            name: "delete template",
            needs: "admin",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/templates/{}", s.template_id),
                    None,
                )
            },
        },
        Route {
            name: "create environment",
            needs: "deployer",
            request: |s, _| {
                (
                    Method::POST,
                    "/v1/environments".into(),
                    Some(
                        json!({"name": "second", "project_id": s.project_id, "template_id": s.template_id}),
                    ),
                )
            },
        },
        Route {
            name: "update environment",
            needs: "deployer",
            request: |s, _| {
                (
                    Method::PATCH,
                    format!("/v1/environments/{}", s.environment_id),
                    Some(json!({"revision": "main"})),
                )
            },
        },
        Route {
            name: "change environment approval",
            needs: "admin",
            request: |s, _| {
                (
                    Method::PATCH,
                    format!("/v1/environments/{}", s.environment_id),
                    Some(json!({"requires_approval": true})),
                )
            },
        },
        Route {
            name: "delete environment",
            needs: "deployer",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/environments/{}", s.environment_id),
                    None,
                )
            },
        },
        Route {
            name: "put organization variable",
            needs: "admin",
            request: |_, _| {
                (
                    Method::PUT,
                    "/v1/organization/variables/v".into(),
                    Some(json!({"value": "1"})),
                )
            },
        },
        Route {
            name: "delete organization variable",
            needs: "admin",
            request: |_, _| {
                (
                    Method::DELETE,
                    "/v1/organization/variables/fixture".into(),
                    None,
                )
            },
        },
        Route {
            name: "put project variable",
            needs: "admin",
            request: |s, _| {
                (
                    Method::PUT,
                    format!("/v1/projects/{}/variables/v", s.project_id),
                    Some(json!({"value": "1"})),
                )
            },
        },
        Route {
            name: "delete project variable",
            needs: "admin",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/projects/{}/variables/fixture", s.project_id),
                    None,
                )
            },
        },
        Route {
            name: "put template variable",
            needs: "admin",
            request: |s, _| {
                (
                    Method::PUT,
                    format!("/v1/templates/{}/variables/v", s.template_id),
                    Some(json!({"value": "1"})),
                )
            },
        },
        Route {
            name: "delete template variable",
            needs: "admin",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/templates/{}/variables/fixture", s.template_id),
                    None,
                )
            },
        },
        Route {
            name: "put environment variable",
            needs: "deployer",
            request: |s, _| {
                (
                    Method::PUT,
                    format!("/v1/environments/{}/variables/v", s.environment_id),
                    Some(json!({"value": "1"})),
                )
            },
        },
        Route {
            name: "delete environment variable",
            needs: "deployer",
            request: |s, _| {
                (
                    Method::DELETE,
                    format!("/v1/environments/{}/variables/fixture", s.environment_id),
                    None,
                )
            },
        },
    ]
}

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

/// Fresh objects for one case: a project with a template and an environment, a variable
/// named `fixture` at every scope, and a key to revoke. Deleting a project or template
/// needs what it holds gone first, so `route` decides which leaves to remove.
async fn fixture(app: &TestApp, case: &str, route: &str) -> (Seeded, String) {
    let admin = &app.admin_key;
    let seeded = app.seed(admin, case).await;
    for scope in seeded.scopes() {
        app.put(
            &format!("{scope}/variables/fixture"),
            admin,
            json!({"value": "f"}),
        )
        .await
        .expect_status_ok();
    }
    if matches!(route, "delete project" | "delete template") {
        app.delete(
            &format!("/v1/environments/{}", seeded.environment_id),
            admin,
        )
        .await
        .expect(204);
    }
    if route == "delete project" {
        app.delete(&format!("/v1/templates/{}", seeded.template_id), admin)
            .await
            .expect(204);
    }
    let victim = app
        .post(
            "/v1/api-keys",
            admin,
            json!({"name": "victim", "role": "viewer"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    (seeded, victim)
}

trait OkStatus {
    fn expect_status_ok(self);
}

impl OkStatus for envplane_e2e::Reply {
    fn expect_status_ok(self) {
        assert!(self.status.is_success(), "{}", self.text);
    }
}

async fn check_matrix(project_scoped: bool) {
    let app = spawn_app().await;
    for (index, route) in routes().into_iter().enumerate() {
        for role in ROLES {
            let case = format!("c{index}-{role}-{project_scoped}");
            let (seeded, victim) = fixture(&app, &case, route.name).await;
            let key = app
                .key(
                    &app.admin_key,
                    role,
                    project_scoped.then_some(seeded.project_id.as_str()),
                )
                .await;
            let (method, path, body) = (route.request)(&seeded, &victim);
            let reply = app.call(method, &path, Some(&key), body).await;
            // A project key never reaches organization-wide objects.
            let org_wide = matches!(
                route.name,
                "create api key"
                    | "revoke api key"
                    | "create project"
                    | "delete project"
                    | "put organization variable"
                    | "delete organization variable"
            );
            let allowed = rank(role) >= rank(route.needs) && !(project_scoped && org_wide);
            if allowed {
                assert!(
                    reply.status.is_success(),
                    "{} as {role} (project key: {project_scoped}): {}",
                    route.name,
                    reply.text
                );
            } else {
                assert_eq!(
                    reply.status.as_u16(),
                    403,
                    "{} as {role} (project key: {project_scoped}): {}",
                    route.name,
                    reply.text
                );
                assert_eq!(reply.body["error"]["code"], "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn organization_keys_follow_the_role_order() {
    check_matrix(false).await;
}

#[tokio::test]
async fn project_keys_stay_in_their_project() {
    check_matrix(true).await;
}

#[tokio::test]
async fn a_project_key_sees_only_its_project() {
    let app = spawn_app().await;
    let mine = app.seed(&app.admin_key, "mine").await;
    let theirs = app.seed(&app.admin_key, "theirs").await;
    let key = app
        .key(&app.admin_key, "admin", Some(&mine.project_id))
        .await;

    let projects = app.get("/v1/projects", &key).await.expect(200);
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert_eq!(projects["items"][0]["id"], mine.project_id.as_str());
    let environments = app.get("/v1/environments", &key).await.expect(200);
    assert_eq!(environments["items"].as_array().unwrap().len(), 1);
    app.get(
        &format!("/v1/environments?project_id={}", theirs.project_id),
        &key,
    )
    .await
    .expect_error(403, "forbidden");
    app.get(&format!("/v1/environments/{}", theirs.environment_id), &key)
        .await
        .expect_error(403, "forbidden");
    app.patch(
        &format!("/v1/templates/{}", theirs.template_id),
        &key,
        json!({"revision": "x"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.get("/v1/audit-events", &key)
        .await
        .expect_error(403, "forbidden");
    let keys = app.get("/v1/api-keys", &key).await.expect(200);
    assert!(keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["project_id"] == mine.project_id.as_str()));
}

#[tokio::test]
async fn viewers_read_but_only_admins_read_the_audit_log() {
    let app = spawn_app().await;
    let seeded = app.seed(&app.admin_key, "read").await;
    let viewer = app.key(&app.admin_key, "viewer", None).await;
    for path in [
        "/v1/organization".to_string(),
        "/v1/projects".to_string(),
        format!("/v1/projects/{}", seeded.project_id),
        format!("/v1/templates/{}", seeded.template_id),
        format!("/v1/environments/{}", seeded.environment_id),
        format!(
            "/v1/environments/{}/variables?effective=true",
            seeded.environment_id
        ),
        "/v1/organization/variables".to_string(),
    ] {
        app.get(&path, &viewer).await.expect(200);
    }
    app.get("/v1/audit-events", &viewer)
        .await
        .expect_error(403, "forbidden");
    app.get("/v1/api-keys", &viewer)
        .await
        .expect_error(403, "forbidden");
    let deployer = app.key(&app.admin_key, "deployer", None).await;
    app.get("/v1/audit-events", &deployer)
        .await
        .expect_error(403, "forbidden");
}

/// The id of `key` itself, among the keys it administers.
async fn own_key_id(app: &TestApp, key: &str) -> String {
    let hint = &key[..12];
    let keys = app.get("/v1/api-keys", key).await.expect(200);
    let own = keys["items"].as_array().unwrap().iter().find(|item| {
        hint.starts_with(item["hint"].as_str().unwrap()) && item["revoked_at"].is_null()
    });
    own.expect("a key lists itself")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_last_admin_key_and_the_operators_key_cannot_be_revoked() {
    let app = spawn_app().await;
    let operator_key_id = own_key_id(&app, &app.admin_key).await;
    let message = app
        .delete(&format!("/v1/api-keys/{operator_key_id}"), &app.admin_key)
        .await
        .expect_error(409, "conflict");
    assert!(message.contains("operator"), "{message}");

    let first = app.organization("tenant").await;
    let first_id = own_key_id(&app, &first).await;
    let message = app
        .delete(&format!("/v1/api-keys/{first_id}"), &first)
        .await
        .expect_error(409, "conflict");
    assert!(
        message.contains("create a new admin key first"),
        "{message}"
    );

    // A project's admin does not administer the organization: it does not count.
    let project = app.post("/v1/projects", &first, json!({"name": "p"})).await;
    let project_id = project.expect(201)["id"].as_str().unwrap().to_string();
    app.key(&first, "admin", Some(&project_id)).await;
    app.delete(&format!("/v1/api-keys/{first_id}"), &first)
        .await
        .expect_error(409, "conflict");

    let second = app.key(&first, "admin", None).await;
    let revoked = app
        .delete(&format!("/v1/api-keys/{first_id}"), &second)
        .await
        .expect(200);
    assert!(!revoked["revoked_at"].is_null());
    let second_id = own_key_id(&app, &second).await;
    app.delete(&format!("/v1/api-keys/{second_id}"), &second)
        .await
        .expect_error(409, "conflict");
    app.get("/v1/organization", &second).await.expect(200);
}

#[tokio::test]
async fn two_admins_revoking_each_other_at_once_leave_one() {
    let app = spawn_app().await;
    for round in 0..5 {
        let first = app.organization(&format!("pair-{round}")).await;
        let second = app.key(&first, "admin", None).await;
        let (first_id, second_id) = (
            own_key_id(&app, &first).await,
            own_key_id(&app, &second).await,
        );
        let (revoke_second, revoke_first) = (
            format!("/v1/api-keys/{second_id}"),
            format!("/v1/api-keys/{first_id}"),
        );
        let (a, b) = tokio::join!(
            app.delete(&revoke_second, &first),
            app.delete(&revoke_first, &second),
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort_unstable();
        // Either one revocation wins and the other is refused (as the last admin, or
        // because its own key was revoked first), never both.
        assert!(
            statuses == [200, 401] || statuses == [200, 409],
            "round {round}: {statuses:?}: {} / {}",
            a.text,
            b.text
        );
    }
}
