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
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use envplane_core::ports::OriginSecret;
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

/// The header CloudFront adds to every request it forwards to the API (an origin
/// custom header): the origin secret, which proves the request passed the WAF.
pub const ORIGIN_HEADER: HeaderName = HeaderName::from_static("x-envplane-origin");

/// The public API: `/health`, `/v1/...` and `/v1/openapi.json`, with no origin check
/// (`envplane serve`, tests).
pub fn api_router(platform: Arc<Platform>) -> Router {
    api_router_behind(platform, None)
}

/// [`api_router`] behind CloudFront: with `origin`, every request but `/health` must
/// carry [`ORIGIN_HEADER`] with a value it accepts, else 403 `forbidden`.
pub fn api_router_behind(platform: Arc<Platform>, origin: Option<Arc<dyn OriginSecret>>) -> Router {
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
    with_middleware(routes, platform, origin)
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

/// What λ webhook serves: `POST /webhooks/github` alone, with no origin check.
pub fn webhook_router(platform: Arc<Platform>) -> Router {
    webhook_router_behind(platform, None)
}

/// [`webhook_router`] behind CloudFront: with `origin`, as [`api_router_behind`].
pub fn webhook_router_behind(
    platform: Arc<Platform>,
    origin: Option<Arc<dyn OriginSecret>>,
) -> Router {
    let routes = Router::new()
        .route(WEBHOOK_PATH, webhook_route())
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(platform.clone());
    with_middleware(routes, platform, origin)
}

/// The one path served without the origin secret: Route 53 health checks call the
/// regions' API endpoints directly and cannot send a custom header. It only tells
/// whether the region acts.
const HEALTH_PATH: &str = "/health";

/// Refuses, with 403, a request that does not carry exactly one [`ORIGIN_HEADER`] whose
/// value `origin` accepts (`/health` aside), and takes the header off the request before
/// anything else sees it. Neither the value nor its length is logged.
async fn require_origin(
    State(origin): State<Arc<dyn OriginSecret>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let presented: Vec<_> = match request.headers_mut().entry(ORIGIN_HEADER) {
        axum::http::header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
        axum::http::header::Entry::Vacant(_) => Vec::new(),
    };
    if request.uri().path() == HEALTH_PATH {
        return next.run(request).await;
    }
    let accepted = match presented.as_slice() {
        [value] => origin.accepts(value.as_bytes()).await,
        _ => false,
    };
    if accepted {
        return next.run(request).await;
    }
    tracing::info!(
        path = request.uri().path(),
        origin_headers = presented.len(),
        "refused a request that did not come through the public entry"
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "requests must come through the platform's public entry",
    )
    .into_response()
}

/// Request ids, tracing, panics as 500s, the body limit, the origin check (with
/// `origin`) and a passive region's refusal of writes, around a whole router.
fn with_middleware(
    routes: Router,
    platform: Arc<Platform>,
    origin: Option<Arc<dyn OriginSecret>>,
) -> Router {
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
        .option_layer(
            origin.map(|origin| axum::middleware::from_fn_with_state(origin, require_origin)),
        )
        .layer(axum::middleware::from_fn_with_state(
            platform,
            refuse_writes_when_passive,
        ));
    Router::new().fallback_service(middleware.service(routes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request};
    use envplane_core::ports::same_secret;
    use tower::ServiceExt;

    /// An origin secret that accepts one value.
    struct Fixed(&'static str);

    #[async_trait::async_trait]
    impl OriginSecret for Fixed {
        async fn accepts(&self, presented: &[u8]) -> bool {
            same_secret(presented, self.0.as_bytes())
        }
    }

    const SECRET: &str = "origin-secret-value";

    fn origin() -> Option<Arc<dyn OriginSecret>> {
        Some(Arc::new(Fixed(SECRET)))
    }

    /// A local platform, and the directory it lives in.
    fn platform() -> (Arc<Platform>, tempfile::TempDir) {
        let data_dir = tempfile::tempdir().unwrap();
        let config = envplane_local::LocalConfig::new(
            data_dir.path().to_path_buf(),
            "http://127.0.0.1:1".into(),
        );
        (envplane_local::open(config).unwrap().platform, data_dir)
    }

    fn request(method: &str, path: &str, origin: &[&str]) -> Request<Body> {
        let mut request = Request::builder().method(method).uri(path);
        for value in origin {
            request = request.header(ORIGIN_HEADER, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn assert_forbidden((status, body): (StatusCode, String)) {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(!body.to_string().contains(SECRET), "{body}");
    }

    #[tokio::test]
    async fn behind_the_public_entry_only_requests_with_the_origin_secret_are_served() {
        let (platform, _data_dir) = platform();
        let router = api_router_behind(platform, origin());
        let openapi = "/v1/openapi.json";

        assert_forbidden(send(&router, request("GET", openapi, &[])).await);
        assert_forbidden(send(&router, request("GET", openapi, &["wrong-value"])).await);
        assert_forbidden(send(&router, request("GET", openapi, &[""])).await);
        // A prefix of the secret, the secret with more after it, and the secret twice.
        assert_forbidden(send(&router, request("GET", openapi, &["origin-secret"])).await);
        let longer = format!("{SECRET}x");
        assert_forbidden(send(&router, request("GET", openapi, &[&longer])).await);
        assert_forbidden(send(&router, request("GET", openapi, &[SECRET, SECRET])).await);
        // Writes and unknown routes are refused before anything else looks at them.
        assert_forbidden(send(&router, request("POST", "/v1/projects", &[])).await);
        assert_forbidden(send(&router, request("GET", "/v1/nowhere", &[])).await);

        let (status, body) = send(&router, request("GET", openapi, &[SECRET])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"openapi\""));
        // Past the check, the API answers as ever: no key, 401.
        let (status, _) = send(&router, request("GET", "/v1/projects", &[SECRET])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// Route 53 health checks cannot send a custom header.
    #[tokio::test]
    async fn health_answers_without_the_origin_secret() {
        let (platform, _data_dir) = platform();
        let router = api_router_behind(platform, origin());
        let (status, body) = send(&router, request("GET", HEALTH_PATH, &[])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = send(&router, request("GET", HEALTH_PATH, &["wrong"])).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_webhook_behind_the_public_entry_checks_the_origin_secret_too() {
        let (platform, _data_dir) = platform();
        let router = webhook_router_behind(platform, origin());
        assert_forbidden(send(&router, request("POST", WEBHOOK_PATH, &[])).await);
        assert_forbidden(send(&router, request("POST", WEBHOOK_PATH, &["wrong"])).await);
        // With the secret, the delivery reaches the webhook, which wants a signature.
        let (status, body) = send(&router, request("POST", WEBHOOK_PATH, &[SECRET])).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    }

    #[tokio::test]
    async fn without_an_origin_secret_nothing_is_checked() {
        let (platform, _data_dir) = platform();
        let router = api_router(platform);
        let (status, _) = send(&router, request("GET", "/v1/openapi.json", &[])).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn handlers_never_see_the_origin_header() {
        let (platform, _data_dir) = platform();
        let echo = Router::new()
            .route(
                "/echo",
                get(|headers: HeaderMap| async move {
                    format!("{}", headers.contains_key(ORIGIN_HEADER))
                }),
            )
            .route(
                HEALTH_PATH,
                get(|headers: HeaderMap| async move {
                    format!("{}", headers.contains_key(ORIGIN_HEADER))
                }),
            );
        let router = with_middleware(echo, platform, origin());
        let (status, body) = send(&router, request("GET", "/echo", &[SECRET])).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "false"));
        let (status, body) = send(&router, request("GET", HEALTH_PATH, &[SECRET])).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "false"));
    }

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
