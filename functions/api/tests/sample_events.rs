//! Feeds the API Gateway HTTP API (v2) sample events in `events/api/` through the same
//! adapter `lambda_http::run` uses, into the real router, and checks the responses.

use envplane_core::secrecy::ExposeSecret;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use serde_json::Value;

struct Lambda {
    router: axum::Router,
    admin_key: String,
    _data_dir: tempfile::TempDir,
}

async fn lambda() -> Lambda {
    let data_dir = tempfile::tempdir().unwrap();
    let config = envplane_local::LocalConfig::new(
        data_dir.path().to_path_buf(),
        "http://127.0.0.1:1".into(),
    );
    let platform = envplane_local::open(config).unwrap().platform;
    let admin_key = platform.bootstrap().await.unwrap().unwrap();
    Lambda {
        router: envplane_http::api_router(platform),
        admin_key: admin_key.expose_secret().to_string(),
        _data_dir: data_dir,
    }
}

/// Invokes the function with `events/api/<name>` and returns the API Gateway response.
async fn invoke(lambda: &Lambda, name: &str) -> Value {
    let path = format!("{}/../../events/api/{name}", env!("CARGO_MANIFEST_DIR"));
    let event = std::fs::read_to_string(&path)
        .unwrap()
        .replace("API_KEY_PLACEHOLDER", &lambda.admin_key);
    let payload: LambdaRequest = serde_json::from_str(&event).unwrap();
    let mut adapter = Adapter::from(lambda.router.clone());
    let response = adapter
        .call(LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn health_answers_without_a_key() {
    let lambda = lambda().await;
    let response = invoke(&lambda, "get-health.json").await;
    assert_eq!(response["statusCode"], 200);
    assert_eq!(body(&response)["status"], "ok");
}

#[tokio::test]
async fn a_base64_body_creates_a_project() {
    let lambda = lambda().await;
    let response = invoke(&lambda, "create-project.json").await;
    assert_eq!(response["statusCode"], 201, "{response}");
    let project = body(&response);
    assert_eq!(project["name"], "payments");
    assert_eq!(project["description"], "Payments team");
    assert!(response["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
}

#[tokio::test]
async fn query_strings_reach_the_router() {
    let lambda = lambda().await;
    let response = invoke(&lambda, "list-environments.json").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        body(&response),
        serde_json::json!({"items": [], "next": null})
    );
}

#[tokio::test]
async fn a_missing_key_is_refused_with_the_api_error_format() {
    let mut lambda = lambda().await;
    lambda.admin_key = "epk_not_a_key".into();
    let response = invoke(&lambda, "create-project.json").await;
    assert_eq!(response["statusCode"], 401);
    assert_eq!(body(&response)["error"]["code"], "unauthenticated");
}
