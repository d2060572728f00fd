//! Which region acts: on AWS the platform runs in two regions over one global table,
//! and one item of that table names the active one. Every consumer in the passive
//! region does nothing; every start and end of a deployment is a write conditional on
//! the item's version (the epoch), so a region that has just lost the switch can start
//! or conclude nothing afterwards.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A region's name as AWS spells it (`eu-west-1`): lower-case letters, digits and
/// hyphens, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a region name: lower-case letters, digits and hyphens, starting with a letter, at most 32 characters")]
pub struct InvalidRegionName(String);

impl RegionName {
    pub fn parse(name: &str) -> Result<Self, InvalidRegionName> {
        let valid = (2..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-');
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(InvalidRegionName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RegionName {
    type Error = InvalidRegionName;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<RegionName> for String {
    fn from(name: RegionName) -> Self {
        name.0
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where this process runs, of an installation spread over regions: `None` in
/// [`crate::service::Settings`] is an installation of one place (local mode), which
/// always acts and fences nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    /// The region this process runs in.
    pub this: RegionName,
    /// The region that is active until the switch is first flipped.
    pub home: RegionName,
    /// How long a read of the switch is trusted ([`SWITCH_CACHE`] on AWS): a flip
    /// reaches every consumer within this (plus replication), and the fence stops
    /// whatever acts on a stale read meanwhile.
    pub cache_for: std::time::Duration,
}

/// How long the functions trust a read of the switch.
pub const SWITCH_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

/// The switch as stored: the body of the one `ActiveRegion` record. Its epoch is the
/// record's version, which grows with every flip (0 while no flip has happened and the
/// home region is active).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSwitch {
    pub active_region: RegionName,
    /// The region that was active before this flip.
    pub previous_region: RegionName,
    pub changed_at: DateTime<Utc>,
    /// Who flipped it (the operator's tool names its user).
    pub changed_by: String,
    /// Whether the flip skipped the replication-lag check.
    #[serde(default)]
    pub forced: bool,
}

/// The switch as read: which region is active since which flip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveRegion {
    pub region: RegionName,
    /// 0 before the first flip; every flip adds one.
    pub epoch: u64,
    /// The last flip, if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<RegionSwitch>,
}

impl ActiveRegion {
    /// The switch before any flip: the home region, epoch 0.
    pub fn initial(home: &RegionName) -> Self {
        Self {
            region: home.clone(),
            epoch: 0,
            switch: None,
        }
    }
}

/// Why a flip is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlipRefused {
    #[error("{0} is already the active region")]
    AlreadyActive(RegionName),
    #[error("replication to {to} lags {lag_ms} ms, above the bound of {bound_ms} ms: wait, or force the flip (writes of the last {lag_ms} ms may be lost)")]
    LagTooHigh {
        to: RegionName,
        lag_ms: u64,
        bound_ms: u64,
    },
    #[error("replication to {to} could not be measured: {reason}; force the flip if the active region is down (writes it had not replicated are lost)")]
    LagUnknown { to: RegionName, reason: String },
}

/// What the replication probe found: how long a write in the active region took to be
/// read in the target region, or why it could not tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lag {
    Measured { millis: u64 },
    Unknown(String),
}

/// The flip to `to`, if it is allowed: never to the region already active, and only
/// with replication lag within `bound_ms` unless `force`d.
pub fn flip(
    current: &ActiveRegion,
    to: &RegionName,
    lag: &Lag,
    bound_ms: u64,
    force: bool,
    now: DateTime<Utc>,
    by: &str,
) -> Result<RegionSwitch, FlipRefused> {
    if &current.region == to {
        return Err(FlipRefused::AlreadyActive(to.clone()));
    }
    if !force {
        match lag {
            Lag::Measured { millis } if *millis > bound_ms => {
                return Err(FlipRefused::LagTooHigh {
                    to: to.clone(),
                    lag_ms: *millis,
                    bound_ms,
                })
            }
            Lag::Measured { .. } => {}
            Lag::Unknown(reason) => {
                return Err(FlipRefused::LagUnknown {
                    to: to.clone(),
                    reason: reason.clone(),
                })
            }
        }
    }
    Ok(RegionSwitch {
        active_region: to.clone(),
        previous_region: current.region.clone(),
        changed_at: now,
        changed_by: by.to_string(),
        forced: force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap()
    }

    #[test]
    fn region_names_are_what_aws_spells() {
        for good in ["eu-west-1", "us-gov-west-1", "local"] {
            assert!(RegionName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "EU-WEST-1",
            "1eu",
            "eu west",
            "eu-",
            "a",
            &"x".repeat(33),
        ] {
            assert!(RegionName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_flip_goes_elsewhere_within_the_lag_bound_or_forced() {
        let now = Utc::now();
        let current = ActiveRegion::initial(&region("eu-west-1"));
        let to = region("eu-central-1");
        let fast = Lag::Measured { millis: 800 };
        let switch = flip(&current, &to, &fast, 5_000, false, now, "ops").unwrap();
        assert_eq!(switch.active_region, to);
        assert_eq!(switch.previous_region, region("eu-west-1"));
        assert!(!switch.forced);

        let slow = Lag::Measured { millis: 9_000 };
        assert!(matches!(
            flip(&current, &to, &slow, 5_000, false, now, "ops"),
            Err(FlipRefused::LagTooHigh { lag_ms: 9_000, .. })
        ));
        let down = Lag::Unknown("the active region did not answer".into());
        assert!(matches!(
            flip(&current, &to, &down, 5_000, false, now, "ops"),
            Err(FlipRefused::LagUnknown { .. })
        ));
        assert!(
            flip(&current, &to, &down, 5_000, true, now, "ops")
                .unwrap()
                .forced
        );
        assert_eq!(
            flip(
                &current,
                &region("eu-west-1"),
                &fast,
                5_000,
                true,
                now,
                "ops"
            ),
            Err(FlipRefused::AlreadyActive(region("eu-west-1")))
        );
    }
}
