use axum::extract::State;
use envplane_core::service::EgressAddresses;

use super::{handlers, App};
use crate::error::ApiError;
use crate::extract::Json;

handlers!(egress_ips,);

/// The fixed addresses every sandbox's traffic leaves from (the NAT gateways of every
/// region), for allow-lists on customers' side. Needs no key: they are published.
#[utoipa::path(get, path = "/v1/meta/egress-ips", tag = "meta", security(()),
    responses((status = 200, body = EgressAddresses)))]
async fn egress_ips(State(platform): State<App>) -> Result<Json<EgressAddresses>, ApiError> {
    Ok(Json(platform.egress_addresses()))
}
