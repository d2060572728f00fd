//! The operator's failover tool on DynamoDB: each region's replica of the global table
//! through a client of that region, and core's procedure over them.

use std::time::Duration;

use envplane_core::ports::{Store, SystemClock};
use envplane_core::region::{ActiveRegion, Lag, RegionName};
use envplane_core::service::{fail_over, read_active_region, FlipRequest, RegionStores};
use serde_json::{json, Value};

use crate::config::{regional_sdk_config, ConfigError};
use crate::dynamodb::DynamoDbStore;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the switch in {region} failed: {source}")]
    Read {
        region: RegionName,
        source: envplane_core::Error,
    },
    #[error("no failover happened yet: there is nothing to fail back from")]
    NothingToFailBack,
    #[error(transparent)]
    Flip(#[from] envplane_core::service::FlipError),
}

/// A flip as the operator asked for it; `to: None` fails back to the region active
/// before the last flip.
pub struct Flip {
    pub to: Option<RegionName>,
    pub max_lag: Duration,
    pub force: bool,
    pub by: String,
}

/// How long the active region's replica gets to answer before it counts as down.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

fn replica(table: &str, region: &RegionName) -> Result<DynamoDbStore, ConfigError> {
    let sdk = regional_sdk_config(region.as_str())?;
    Ok(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ))
}

async fn read(
    store: &dyn Store,
    home: &RegionName,
    region: &RegionName,
) -> Result<ActiveRegion, OpsError> {
    read_active_region(store, home)
        .await
        .map_err(|source| OpsError::Read {
            region: region.clone(),
            source,
        })
}

/// The switch as `region`'s replica reads it.
pub async fn status(
    table: &str,
    home: &RegionName,
    region: &RegionName,
) -> Result<Value, OpsError> {
    let active = read(&replica(table, region)?, home, region).await?;
    Ok(json!({"read_in": region, "active": active}))
}

/// Fails over (or back): reads the switch in the target region, reaches the active
/// region's replica if it answers within [`REACH_TIMEOUT`], and runs core's procedure.
pub async fn failover(table: &str, home: &RegionName, flip: Flip) -> Result<Value, OpsError> {
    // Where to read first: the named target, or for a failback the home region (any
    // replica names the region to go back to).
    let reader = flip.to.clone().unwrap_or_else(|| home.clone());
    let current = read(&replica(table, &reader)?, home, &reader).await?;
    let to = match flip.to {
        Some(to) => to,
        None => current
            .switch
            .as_ref()
            .map(|switch| switch.previous_region.clone())
            .ok_or(OpsError::NothingToFailBack)?,
    };
    let target = replica(table, &to)?;
    let active = replica(table, &current.region)?;
    let reachable = matches!(
        tokio::time::timeout(REACH_TIMEOUT, read_active_region(&active, home)).await,
        Ok(Ok(_))
    );
    let request = FlipRequest {
        to: to.clone(),
        home: home.clone(),
        max_lag: flip.max_lag,
        force: flip.force,
        by: flip.by,
    };
    let stores = RegionStores {
        active: reachable.then_some(&active as &dyn Store),
        target: &target,
    };
    let done = fail_over(stores, &request, &SystemClock).await?;
    Ok(json!({
        "active": done.active,
        "previous_region": current.region,
        "previous_region_reachable": reachable,
        "replication_lag_ms": match done.lag {
            Lag::Measured { millis } => json!(millis),
            Lag::Unknown(reason) => json!({"unknown": reason}),
        },
        "flip_seen_by_target_after_ms": done.seen_by_target_after.map(|after| after.as_millis() as u64),
        "next": format!("terraform apply -var active=true in {to}'s regional root, and -var active=false in {}'s when it is reachable", current.region),
    }))
}
