//! Objects the handlers' tests start from, created through the platform's own use cases.

use envplane_core::auth::Caller;
use envplane_core::ports::DeploymentMessage;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::Platform;
use serde_json::json;

fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid request body")
}

/// Bootstraps `platform` and queues one `apply` deployment of a new environment (with
/// its project and template); returns the admin caller and the deployment's message.
pub async fn queued_deployment(platform: &Platform) -> (Caller, DeploymentMessage) {
    let key = platform
        .bootstrap()
        .await
        .expect("bootstrap")
        .expect("a fresh platform");
    let caller = platform
        .authenticate(key.expose_secret(), "test")
        .await
        .expect("the admin key authenticates");
    let project = platform
        .create_project(&caller, from(json!({"name": "payments"})))
        .await
        .expect("create project");
    let template = platform
        .create_template(
            &caller,
            from(json!({
                "name": "network",
                "project_id": project.id,
                "repository": "https://github.com/acme/infra.git",
                "iac_version": "1.9.8",
            })),
        )
        .await
        .expect("create template");
    let environment = platform
        .create_environment(
            &caller,
            from(json!({"name": "staging", "project_id": project.id, "template_id": template.id})),
        )
        .await
        .expect("create environment");
    let deployment = platform
        .create_deployment(&caller, &environment.id, from(json!({"action": "apply"})))
        .await
        .expect("create deployment");
    let message = DeploymentMessage {
        org_id: caller.org_id.clone(),
        environment_id: environment.id,
        deployment_id: deployment.id,
    };
    (caller, message)
}
