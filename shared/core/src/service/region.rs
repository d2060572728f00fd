//! The active-region switch as the use cases see it: whether this region acts, the
//! fence its starts and ends commit with, the new active region's adoption of what was
//! queued at a flip, and the flip itself (the operator's failover tool).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::deployment::{Deployment, DeploymentStatus};
use crate::ports::{DeploymentMessage, Kind, Record, Store, StoreError, WriteOp};
use crate::region::{flip, ActiveRegion, FlipRefused, Lag, RegionName, RegionSwitch};
use crate::{Error, Result};

use super::deployments::message_for;
use super::{decode, record, Loaded, Platform, Stored, PLATFORM_RECORDS};

/// The id of the one switch record.
const SWITCH_ID: &str = "active";

impl Stored for RegionSwitch {
    const KIND: Kind = Kind::ActiveRegion;
    const NOUN: &'static str = "active region";
}

/// The claim of one epoch's adoption of the queued deployments.
#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    epoch: u64,
    region: RegionName,
    at: DateTime<Utc>,
}

impl Stored for Handover {
    const KIND: Kind = Kind::Handover;
    const NOUN: &'static str = "handover";
}

/// The last read of the switch, and when it was read.
#[derive(Default)]
pub(super) struct SwitchCache(Mutex<Option<(Instant, ActiveRegion)>>);

impl SwitchCache {
    fn fresh(&self, cache_for: Duration) -> Option<ActiveRegion> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(read_at, _)| read_at.elapsed() < cache_for)
            .map(|(_, active)| active.clone())
    }

    fn keep(&self, active: &ActiveRegion) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), active.clone()));
    }
}

/// The switch as `store` holds it (consistently read): the home region at epoch 0
/// until the first flip.
pub async fn read_active_region(store: &dyn Store, home: &RegionName) -> Result<ActiveRegion> {
    let stored = store
        .get(Kind::ActiveRegion, PLATFORM_RECORDS, SWITCH_ID)
        .await?;
    active_from(stored.as_ref(), home)
}

fn active_from(stored: Option<&Record>, home: &RegionName) -> Result<ActiveRegion> {
    Ok(match stored {
        None => ActiveRegion::initial(home),
        Some(stored) => {
            let switch: RegionSwitch = decode(stored)?;
            ActiveRegion {
                region: switch.active_region.clone(),
                epoch: stored.version,
                switch: Some(switch),
            }
        }
    })
}

/// What a flip asks for.
#[derive(Debug, Clone)]
pub struct FlipRequest {
    pub to: RegionName,
    /// The region active before the first flip.
    pub home: RegionName,
    /// The most replication lag a flip accepts without `force`.
    pub max_lag: Duration,
    pub force: bool,
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FlipError {
    #[error(transparent)]
    Refused(#[from] FlipRefused),
    #[error("the switch changed while flipping it (another flip?): read it again")]
    Raced,
    #[error(transparent)]
    Platform(#[from] Error),
}

/// What a failover did.
#[derive(Debug, Clone)]
pub struct Failover {
    pub active: ActiveRegion,
    /// The replication lag measured before the flip.
    pub lag: Lag,
    /// How long the target region took to read the flip (`None`: not seen within
    /// the wait, or written there directly).
    pub seen_by_target_after: Option<Duration>,
}

/// The table as each region reads it: the region active now (`None` when it cannot be
/// reached: a disaster) and the region to fail over to.
#[derive(Clone, Copy)]
pub struct RegionStores<'a> {
    pub active: Option<&'a dyn Store>,
    pub target: &'a dyn Store,
}

/// How often the probe and the wait for the flip look at the target region.
const POLL: Duration = Duration::from_millis(100);

/// Fails over to `request.to`. The replication lag is measured first (a probe written
/// in the active region, timed until the target reads it) and a lag over the bound
/// refuses the flip unless forced. The flip is written in the active region when it
/// can be reached, so that region stops at once and the target starts only once the
/// flip has replicated to it, after everything written before it (never both acting);
/// a forced flip with the active region down is written in the target.
pub async fn fail_over(
    stores: RegionStores<'_>,
    request: &FlipRequest,
    clock: &dyn crate::ports::Clock,
) -> std::result::Result<Failover, FlipError> {
    let lag = match stores.active {
        Some(active) => measure_lag(active, stores.target, request.max_lag * 2, clock).await,
        None => Lag::Unknown("the active region's table could not be reached".into()),
    };
    let written_in = stores.active.unwrap_or(stores.target);
    let active = flip_active_region(written_in, request, &lag, clock.now()).await?;
    let seen_by_target_after = match stores.active {
        Some(_) => {
            wait_for_epoch(
                stores.target,
                &request.home,
                active.epoch,
                request.max_lag * 10,
            )
            .await?
        }
        None => None,
    };
    Ok(Failover {
        active,
        lag,
        seen_by_target_after,
    })
}

/// Writes a probe through `source` and times how long `target` takes to read it,
/// giving up after `within`.
async fn measure_lag(
    source: &dyn Store,
    target: &dyn Store,
    within: Duration,
    clock: &dyn crate::ports::Clock,
) -> Lag {
    let id = crate::ids::new_id("probe");
    let insert = Record {
        kind: Kind::RegionProbe,
        org_id: PLATFORM_RECORDS.to_string(),
        id: id.clone(),
        parent_id: None,
        unique_key: None,
        index_key: None,
        // The store forgets probes after a day.
        expires_at: Some(clock.now().timestamp() + 24 * 3600),
        version: 1,
        body: serde_json::json!({"written_at": clock.now()}),
    };
    let started = Instant::now();
    if let Err(error) = source.commit(vec![WriteOp::Insert(insert)]).await {
        return Lag::Unknown(format!("the probe could not be written: {error}"));
    }
    while started.elapsed() < within {
        match target.get(Kind::RegionProbe, PLATFORM_RECORDS, &id).await {
            Ok(Some(_)) => {
                return Lag::Measured {
                    millis: started.elapsed().as_millis() as u64,
                }
            }
            Ok(None) => tokio::time::sleep(POLL).await,
            Err(error) => {
                return Lag::Unknown(format!("the target region could not be read: {error}"))
            }
        }
    }
    Lag::Unknown(format!(
        "the probe had not replicated after {} ms",
        within.as_millis()
    ))
}

/// Waits until `store` reads the switch at `epoch` or later; how long that took.
async fn wait_for_epoch(
    store: &dyn Store,
    home: &RegionName,
    epoch: u64,
    within: Duration,
) -> Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < within {
        if read_active_region(store, home).await?.epoch >= epoch {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(None)
}

/// Flips the switch in `store` conditional on the epoch it read there, so two flips
/// at once make one.
async fn flip_active_region(
    store: &dyn Store,
    request: &FlipRequest,
    lag: &Lag,
    now: DateTime<Utc>,
) -> std::result::Result<ActiveRegion, FlipError> {
    let stored = store
        .get(Kind::ActiveRegion, PLATFORM_RECORDS, SWITCH_ID)
        .await
        .map_err(Error::from)?;
    let current = active_from(stored.as_ref(), &request.home)?;
    let bound_ms = request.max_lag.as_millis() as u64;
    let switch = flip(
        &current,
        &request.to,
        lag,
        bound_ms,
        request.force,
        now,
        &request.by,
    )?;
    let op = match stored {
        None => WriteOp::Insert(record(PLATFORM_RECORDS, SWITCH_ID, None, None, &switch)?),
        Some(stored) => Loaded {
            value: switch.clone(),
            stored,
        }
        .replace()?,
    };
    match store.commit(vec![op]).await {
        Ok(()) => Ok(ActiveRegion {
            region: switch.active_region.clone(),
            epoch: current.epoch + 1,
            switch: Some(switch),
        }),
        Err(StoreError::Conflict) => Err(FlipError::Raced),
        Err(error) => Err(Error::from(error).into()),
    }
}

impl Platform {
    /// The switch, read at most the regions' `cache_for` ago; `None` for an
    /// installation of one place, which always acts.
    pub async fn active_region(&self) -> Result<Option<ActiveRegion>> {
        let Some(regions) = &self.settings.regions else {
            return Ok(None);
        };
        if let Some(active) = self.switch_cache.fresh(regions.cache_for) {
            return Ok(Some(active));
        }
        let active = read_active_region(self.store.as_ref(), &regions.home).await?;
        self.switch_cache.keep(&active);
        Ok(Some(active))
    }

    /// Whether this region acts: always in one place; on AWS when the switch names it.
    pub async fn acting(&self) -> Result<bool> {
        Ok(self.passive_reason().await?.is_none())
    }

    /// Why this region does nothing, naming the active one; `None` when it acts.
    pub async fn passive_reason(&self) -> Result<Option<String>> {
        Ok(self.switch_here().await?.err())
    }

    /// The switch, if this region is the active one; else why it is passive. `Ok(None)`
    /// in one place.
    async fn switch_here(&self) -> Result<std::result::Result<Option<ActiveRegion>, String>> {
        let (Some(regions), Some(active)) = (&self.settings.regions, self.active_region().await?)
        else {
            return Ok(Ok(None));
        };
        if active.region == regions.this {
            return Ok(Ok(Some(active)));
        }
        Ok(Err(format!(
            "this region ({}) is passive: the active region is {} (epoch {}); send requests there",
            regions.this, active.region, active.epoch
        )))
    }

    /// The condition a start or an end of a deployment commits with: the switch still
    /// at the epoch this region read when it found itself active. `None` in one place;
    /// `Passive` when another region is active.
    pub(super) async fn fence(&self) -> Result<Option<WriteOp>> {
        let active = self.switch_here().await?.map_err(Error::Passive)?;
        Ok(active.map(|active| WriteOp::Check {
            kind: Kind::ActiveRegion,
            org_id: PLATFORM_RECORDS.to_string(),
            id: SWITCH_ID.to_string(),
            expected_version: active.epoch,
        }))
    }

    /// `ops` with the fence added, for a commit that starts or ends a deployment.
    pub(super) async fn fenced(&self, mut ops: Vec<WriteOp>) -> Result<Vec<WriteOp>> {
        ops.extend(self.fence().await?);
        Ok(ops)
    }

    /// Stamps a deployment taken here with this region and its epoch.
    pub(super) async fn stamp_region(&self, deployment: &mut Deployment) -> Result<()> {
        if let (Some(regions), Some(active)) = (&self.settings.regions, self.active_region().await?)
        {
            deployment.region = Some(regions.this.clone());
            deployment.epoch = Some(active.epoch);
        }
        Ok(())
    }

    /// After a flip, the new active region's first round sends every queued deployment
    /// to its own queue: their messages sit in the old region's queue, which nobody
    /// reads now. Claimed once per epoch; dispatch is idempotent, so a message that
    /// also arrives another way starts nothing twice. Returns how many it sent.
    pub(super) async fn adopt_queued(&self) -> Result<usize> {
        let Ok(Some(active)) = self.switch_here().await? else {
            return Ok(0);
        };
        if active.epoch == 0 {
            return Ok(0);
        }
        let claim = Handover {
            epoch: active.epoch,
            region: active.region.clone(),
            at: self.now(),
        };
        let id = format!("{:020}", active.epoch);
        let insert = WriteOp::Insert(record(PLATFORM_RECORDS, &id, None, None, &claim)?);
        match self.store.commit(self.fenced(vec![insert]).await?).await {
            Ok(()) => {}
            // Adopted already (by this round's twin, or before a restart).
            Err(StoreError::Conflict) => return Ok(0),
            Err(error) => return Err(error.into()),
        }
        let queued = self.indexed::<Deployment>(DeploymentStatus::Queued).await?;
        let messages: Vec<DeploymentMessage> = queued
            .iter()
            .map(|loaded| message_for(&loaded.stored.org_id, &loaded.value))
            .collect();
        self.queue.send_many(&messages).await?;
        tracing::info!(
            epoch = active.epoch,
            adopted = messages.len(),
            "took over the queued deployments after a flip"
        );
        Ok(messages.len())
    }
}
