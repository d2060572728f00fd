//! Variables at the four scopes: the same four operations under each scope's path.

use axum::extract::State;
use axum::http::StatusCode;
use envplane_core::auth::Caller;
use envplane_core::model::{Listing, PutVariable, Variable};
use envplane_core::service::Scope;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{handlers, App, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Path, Query};

handlers!(
    organization::list,
    organization::get,
    organization::put,
    organization::delete,
    project::list,
    project::get,
    project::put,
    project::delete,
    template::list,
    template::get,
    template::put,
    template::delete,
    list_environment_variables,
    environment::get,
    environment::put,
    environment::delete,
);

async fn list(
    platform: &App,
    caller: &Caller,
    scope: Scope,
    page: PageParams,
) -> Result<Json<Listing<Variable>>, ApiError> {
    Ok(Json(
        platform
            .list_variables(caller, &scope, &page.into())
            .await?,
    ))
}

async fn get(
    platform: &App,
    caller: &Caller,
    scope: Scope,
    name: &str,
) -> Result<Json<Variable>, ApiError> {
    Ok(Json(platform.get_variable(caller, &scope, name).await?))
}

async fn put(
    platform: &App,
    caller: &Caller,
    scope: Scope,
    name: &str,
    input: PutVariable,
) -> Result<(StatusCode, Json<Variable>), ApiError> {
    let (variable, created) = platform.put_variable(caller, &scope, name, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(variable)))
}

async fn delete(
    platform: &App,
    caller: &Caller,
    scope: Scope,
    name: &str,
) -> Result<StatusCode, ApiError> {
    platform.delete_variable(caller, &scope, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?effective=true` lists what a deployment gets: all scopes merged, nearer winning.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EnvironmentVariablesParams {
    /// Merge organization, project, template and environment variables (nearer wins),
    /// listed by name.
    #[serde(default)]
    effective: bool,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/environments/{id}/variables", tag = "variables",
    params(("id" = String, Path), EnvironmentVariablesParams),
    responses((status = 200, body = Listing<Variable>), (status = 404, body = ErrorBody)))]
async fn list_environment_variables(
    State(platform): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(params): Query<EnvironmentVariablesParams>,
) -> Result<Json<Listing<Variable>>, ApiError> {
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    };
    if params.effective {
        let page = page.into();
        return Ok(Json(
            platform.effective_variables(&caller, &id, &page).await?,
        ));
    }
    list(&platform, &caller, Scope::Environment(id), page).await
}

/// The handlers of one scope whose path carries the scope's id.
macro_rules! scope_with_id {
    ($module:ident, $variant:ident, $collection:literal, $item:literal, $with_list:tt) => {
        pub mod $module {
            use super::*;

            scope_with_id!(@list $with_list, $module, $variant, $collection);

            #[utoipa::path(get, path = $item, tag = "variables",
                operation_id = concat!("get_", stringify!($module), "_variable"),
                params(("id" = String, Path), ("name" = String, Path)),
                responses((status = 200, body = Variable), (status = 404, body = ErrorBody)))]
            pub async fn get(
                State(platform): State<App>,
                Auth(caller): Auth,
                Path((id, name)): Path<(String, String)>,
            ) -> Result<Json<Variable>, ApiError> {
                super::get(&platform, &caller, Scope::$variant(id), &name).await
            }

            /// Set a variable. A sensitive value is encrypted and never shown again.
            #[utoipa::path(put, path = $item, tag = "variables",
                operation_id = concat!("put_", stringify!($module), "_variable"),
                params(("id" = String, Path), ("name" = String, Path)), request_body = PutVariable,
                responses((status = 200, body = Variable), (status = 201, body = Variable), (status = 422, body = ErrorBody)))]
            pub async fn put(
                State(platform): State<App>,
                Auth(caller): Auth,
                Path((id, name)): Path<(String, String)>,
                Json(input): Json<PutVariable>,
            ) -> Result<(StatusCode, Json<Variable>), ApiError> {
                super::put(&platform, &caller, Scope::$variant(id), &name, input).await
            }

            #[utoipa::path(delete, path = $item, tag = "variables",
                operation_id = concat!("delete_", stringify!($module), "_variable"),
                params(("id" = String, Path), ("name" = String, Path)),
                responses((status = 204), (status = 404, body = ErrorBody)))]
            pub async fn delete(
                State(platform): State<App>,
                Auth(caller): Auth,
                Path((id, name)): Path<(String, String)>,
            ) -> Result<StatusCode, ApiError> {
                super::delete(&platform, &caller, Scope::$variant(id), &name).await
            }
        }
    };
    (@list true, $module:ident, $variant:ident, $collection:literal) => {
        #[utoipa::path(get, path = $collection, tag = "variables",
            operation_id = concat!("list_", stringify!($module), "_variables"),
            params(("id" = String, Path), PageParams),
            responses((status = 200, body = Listing<Variable>), (status = 404, body = ErrorBody)))]
        pub async fn list(
            State(platform): State<App>,
            Auth(caller): Auth,
            Path(id): Path<String>,
            Query(page): Query<PageParams>,
        ) -> Result<Json<Listing<Variable>>, ApiError> {
            super::list(&platform, &caller, Scope::$variant(id), page).await
        }
    };
    (@list false, $module:ident, $variant:ident, $collection:literal) => {};
}

scope_with_id!(
    project,
    Project,
    "/v1/projects/{id}/variables",
    "/v1/projects/{id}/variables/{name}",
    true
);
scope_with_id!(
    template,
    Template,
    "/v1/templates/{id}/variables",
    "/v1/templates/{id}/variables/{name}",
    true
);
scope_with_id!(
    environment,
    Environment,
    "/v1/environments/{id}/variables",
    "/v1/environments/{id}/variables/{name}",
    false
);

pub mod organization {
    use super::*;

    #[utoipa::path(get, path = "/v1/organization/variables", tag = "variables",
        operation_id = "list_organization_variables", params(PageParams),
        responses((status = 200, body = Listing<Variable>)))]
    pub async fn list(
        State(platform): State<App>,
        Auth(caller): Auth,
        Query(page): Query<PageParams>,
    ) -> Result<Json<Listing<Variable>>, ApiError> {
        super::list(&platform, &caller, Scope::Organization, page).await
    }

    #[utoipa::path(get, path = "/v1/organization/variables/{name}", tag = "variables",
        operation_id = "get_organization_variable",
        params(("name" = String, Path)),
        responses((status = 200, body = Variable), (status = 404, body = ErrorBody)))]
    pub async fn get(
        State(platform): State<App>,
        Auth(caller): Auth,
        Path(name): Path<String>,
    ) -> Result<Json<Variable>, ApiError> {
        super::get(&platform, &caller, Scope::Organization, &name).await
    }

    /// Set an organization-wide variable. A sensitive value is encrypted and never shown again.
    #[utoipa::path(put, path = "/v1/organization/variables/{name}", tag = "variables",
        operation_id = "put_organization_variable",
        params(("name" = String, Path)), request_body = PutVariable,
        responses((status = 200, body = Variable), (status = 201, body = Variable), (status = 422, body = ErrorBody)))]
    pub async fn put(
        State(platform): State<App>,
        Auth(caller): Auth,
        Path(name): Path<String>,
        Json(input): Json<PutVariable>,
    ) -> Result<(StatusCode, Json<Variable>), ApiError> {
        super::put(&platform, &caller, Scope::Organization, &name, input).await
    }

    #[utoipa::path(delete, path = "/v1/organization/variables/{name}", tag = "variables",
        operation_id = "delete_organization_variable",
        params(("name" = String, Path)),
        responses((status = 204), (status = 404, body = ErrorBody)))]
    pub async fn delete(
        State(platform): State<App>,
        Auth(caller): Auth,
        Path(name): Path<String>,
    ) -> Result<StatusCode, ApiError> {
        super::delete(&platform, &caller, Scope::Organization, &name).await
    }
}
