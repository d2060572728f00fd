//! One module per kind of object; each gives its routes with their OpenAPI annotations.

pub mod api_keys;
pub mod audit;
pub mod deployments;
pub mod environments;
pub mod organizations;
pub mod projects;
pub mod templates;
pub mod variables;

use std::sync::Arc;

use envplane_core::service::PageRequest;
use envplane_core::Platform;
use serde::Deserialize;
use utoipa::IntoParams;

/// The state every handler gets.
pub type App = Arc<Platform>;

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
