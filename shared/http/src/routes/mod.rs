//! One module per kind of object; each declares its handlers with `handlers!`, which
//! gives the module's routes and, separately, their OpenAPI description.

pub mod api_keys;
pub mod audit;
pub mod deployments;
pub mod environments;
pub mod organizations;
pub mod projects;
pub mod templates;
pub mod variables;

use std::sync::Arc;

use axum::handler::Handler;
use axum::routing::MethodRouter;
use axum::Router;
use envplane_core::service::PageRequest;
use envplane_core::Platform;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::PathItemExt;

/// The state every handler gets.
pub type App = Arc<Platform>;

/// Declares a module's handlers once, for two uses: `routes(router)` adds each handler at the path
/// and methods of its `#[utoipa::path]` (cheap, what a cold start builds), and
/// `documented()`, the same handlers with their OpenAPI operations and schemas (costly:
/// 82% of the api function's init when it was built at start; now built only when
/// `/v1/openapi.json` is first asked for).
macro_rules! handlers {
    (@route $router:ident, $name:ident) => {
        paste::paste! { crate::routes::route::<[<__path_ $name>], _, _>($router, $name) }
    };
    (@route $router:ident, $module:ident :: $name:ident) => {
        paste::paste! { crate::routes::route::<$module::[<__path_ $name>], _, _>($router, $module::$name) }
    };
    ($($first:ident $(:: $second:ident)?),+ $(,)?) => {
        pub fn routes(router: axum::Router<crate::routes::App>) -> axum::Router<crate::routes::App> {
            $(let router = handlers!(@route router, $first $(:: $second)?);)+
            router
        }

        pub fn documented() -> utoipa_axum::router::OpenApiRouter<crate::routes::App> {
            utoipa_axum::router::OpenApiRouter::new()
                $(.routes(utoipa_axum::routes!($first $(:: $second)?)))+
        }
    };
}
pub(crate) use handlers;

/// `handler` at the path and methods its `#[utoipa::path]` (`P`) declares.
fn route<P, H, T>(router: Router<App>, handler: H) -> Router<App>
where
    P: utoipa::Path,
    H: Handler<T, App>,
    T: 'static,
{
    let methods = P::methods()
        .into_iter()
        .fold(MethodRouter::new(), |methods, method| {
            methods.on(method.to_method_filter(), handler.clone())
        });
    router.route(&P::path(), methods)
}

/// `?cursor=&limit=` of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next` value of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<usize>,
}

impl From<PageParams> for PageRequest {
    fn from(params: PageParams) -> Self {
        PageRequest {
            cursor: params.cursor,
            limit: params.limit,
        }
    }
}

/// `?project_id=&cursor=&limit=` of a listing that can be narrowed to one project.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProjectPageParams {
    /// Only this project's objects.
    project_id: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<usize>,
}

impl ProjectPageParams {
    fn split(self) -> (Option<String>, PageRequest) {
        (
            self.project_id,
            PageRequest {
                cursor: self.cursor,
                limit: self.limit,
            },
        )
    }
}
