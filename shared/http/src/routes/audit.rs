use axum::extract::State;
use envplane_core::model::{AuditEvent, Listing};

use super::{handlers, App, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Json, Query};

handlers!(list_audit_events,);

/// The organization's audit log, newest first (admins only).
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(PageParams),
    responses((status = 200, body = Listing<AuditEvent>), (status = 403, body = ErrorBody)))]
async fn list_audit_events(
    State(platform): State<App>,
    Auth(caller): Auth,
    Query(page): Query<PageParams>,
) -> Result<Json<Listing<AuditEvent>>, ApiError> {
    Ok(Json(
        platform.list_audit_events(&caller, &page.into()).await?,
    ))
}
