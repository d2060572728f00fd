//! The axum routers over the core use cases. The same `Router` serves API Gateway (via
//! `lambda_http`) and `envplane serve`.

mod contract;
mod error;
mod extract;
mod routes;
mod runner;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use envplane_core::Platform;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ErrorBody};

/// [`openapi()`] as committed, served at `/v1/openapi.json`.
const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "envplane API",
        description = "Self-hosted Infrastructure-as-Code automation: projects, templates, environments, variables, deployments, state, API keys and audit.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An envplane API key (epk_...)"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// The public routes, at the paths and methods of their OpenAPI annotations, added to
/// one router (merging routers rebuilds the route tree each time).
fn public_routes(router: Router<Arc<Platform>>) -> Router<Arc<Platform>> {
    let router = routes::organizations::routes(router);
    let router = routes::api_keys::routes(router);
    let router = routes::projects::routes(router);
    let router = routes::templates::routes(router);
    let router = routes::environments::routes(router);
    let router = routes::variables::routes(router);
    let router = routes::audit::routes(router);
    let router = routes::github::routes(router);
    let router = routes::notifications::routes(router);
    let router = routes::meta::routes(router);
    routes::deployments::routes(router)
}

/// The OpenAPI 3 document of the public API, from the same handler annotations.
/// Generating it takes longer than everything else a function does at start, and its
/// code would make up a good part of the api binary: what the API serves is this
/// document as generated and committed (`openapi.json`; a test keeps the two equal).
pub fn openapi() -> OpenApiDocument {
    let mut document = OpenApiRouter::<Arc<Platform>>::with_openapi(ApiDoc::openapi())
        .merge(routes::organizations::documented())
        .merge(routes::api_keys::documented())
        .merge(routes::projects::documented())
        .merge(routes::templates::documented())
        .merge(routes::environments::documented())
        .merge(routes::variables::documented())
        .merge(routes::audit::documented())
        .merge(routes::github::documented())
        .merge(routes::notifications::documented())
        .merge(routes::meta::documented())
        .merge(routes::deployments::documented())
        .into_openapi();
    contract::Contract.modify(&mut document);
    document
}

/// The public API: `/health`, `/v1/...` and `/v1/openapi.json`.
pub fn api_router(platform: Arc<Platform>) -> Router {
    let routes = runner::routes(public_routes(Router::new()))
        .route("/health", get(health))
        .route(WEBHOOK_PATH, webhook_route())
        .route(
            "/v1/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .with_state(platform.clone());
    with_middleware(routes, platform)
}

/// 200 where this region acts, 503 where it is passive (or cannot tell): what a load
/// balancer's or DNS failover's health check follows.
async fn health(State(platform): State<Arc<Platform>>) -> axum::response::Response {
    match platform.passive_reason().await {
        Ok(None) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Ok(Some(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "passive", "message": reason})),
        )
            .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// In a passive region, every request that may change something is answered 503,
/// naming the active region; reads are served (from the table's replica).
async fn refuse_writes_when_passive(
    State(platform): State<Arc<Platform>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    match platform.passive_reason().await {
        Ok(None) => next.run(request).await,
        Ok(Some(reason)) => ApiError::from(envplane_core::Error::Passive(reason)).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Where GitHub delivers webhooks.
const WEBHOOK_PATH: &str = "/webhooks/github";

fn webhook_route() -> axum::routing::MethodRouter<Arc<Platform>> {
    axum::routing::post(routes::github::github_webhook)
        .layer(DefaultBodyLimit::max(routes::github::WEBHOOK_BODY_LIMIT))
}

/// What λ webhook serves: `POST /webhooks/github` alone.
pub fn webhook_router(platform: Arc<Platform>) -> Router {
    let routes = Router::new()
        .route(WEBHOOK_PATH, webhook_route())
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(platform.clone());
    with_middleware(routes, platform)
}

/// Request ids, tracing, panics as 500s, the body limit and a passive region's refusal
/// of writes, around a whole router.
fn with_middleware(routes: Router, platform: Arc<Platform>) -> Router {
    // Around the whole router once: `Router::layer` would wrap each route on its own.
    let middleware = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(extract::request_ids))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the platform could not complete the request; it has been logged",
            )
            .into_response()
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            platform,
            refuse_writes_when_passive,
        ));
    Router::new().fallback_service(middleware.service(routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `ENVPLANE_WRITE_OPENAPI=1 cargo test -p envplane-http`.
    #[test]
    fn the_served_openapi_document_is_the_generated_one() {
        let generated = openapi().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("ENVPLANE_WRITE_OPENAPI").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
                &generated,
            )
            .unwrap();
            return;
        }
        assert!(
            generated == OPENAPI_JSON,
            "shared/http/openapi.json is out of date: the API changed; regenerate it with \
             `ENVPLANE_WRITE_OPENAPI=1 cargo test -p envplane-http`"
        );
    }
}
