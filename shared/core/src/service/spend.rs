//! The daily spend job: once a day, where the platform is active, it reads the bill
//! (month to date, and yesterday's month on the first) grouped by the environments'
//! tags, keeps each environment's spend day by day, and tells each budget threshold
//! the spend reaches once a month. Cost Explorer charges for each request, so the
//! first round of a day claims the day and the others do nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Role};
use crate::model::Environment;
use crate::notification::BudgetNotice;
use crate::ports::{DaySpend, Kind, StoreError, WriteOp};
use crate::spend::{first_of_month, month_of, EnvironmentCosts, SpendMonth};
use crate::{Error, Result};

use super::{record, retrying_conflicts, Platform, Stored, PLATFORM_RECORDS};

impl Stored for SpendMonth {
    const KIND: Kind = Kind::SpendMonth;
    const NOUN: &'static str = "spend";
}

/// The claim of one day's run.
#[derive(Debug, Serialize, Deserialize)]
struct SpendRun {
    day: NaiveDate,
    started_at: DateTime<Utc>,
}

impl Stored for SpendRun {
    const KIND: Kind = Kind::SpendRun;
    const NOUN: &'static str = "spend run";
}

/// What one round of the spend job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpendRound {
    /// It read the bill: the first round of the day.
    pub ran: bool,
    /// Environments whose spend it recorded.
    pub environments: usize,
    /// Budget thresholds it told.
    pub thresholds: usize,
    /// Nothing ran: this region is passive, or there is no bill to read here.
    pub passive: bool,
}

fn spend_month_id(environment_id: &str, month: &str) -> String {
    format!("{environment_id}.{month}")
}

impl Platform {
    /// One round: the first of each day reads the bill. A bill that cannot be read is
    /// logged; the next day's reading covers the month again.
    pub async fn run_spend_job(&self) -> Result<SpendRound> {
        let mut round = SpendRound::default();
        if !self.spend.available() || !self.acting().await? {
            round.passive = true;
            return Ok(round);
        }
        let now = self.now();
        let today = now.date_naive();
        if !self.claim_day(today, now).await? {
            return Ok(round);
        }
        round.ran = true;
        let yesterday = today.pred_opt().unwrap_or(today);
        let bill = match self
            .spend
            .daily_spend(first_of_month(yesterday), today)
            .await
        {
            Ok(bill) => bill,
            Err(error) => {
                tracing::error!(%error, "the daily spend job could not read the bill; it reads the month again tomorrow");
                return Ok(round);
            }
        };
        for ((org_id, environment_id), days) in by_environment(bill) {
            let recorded = retrying_conflicts("the spend kept changing", || {
                self.record_spend(&org_id, &environment_id, &days)
            })
            .await;
            match recorded {
                Ok(Some(told)) => {
                    round.environments += 1;
                    round.thresholds += told;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%environment_id, %error, "recording an environment's spend failed")
                }
            }
        }
        Ok(round)
    }

    /// Whether this round is the day's first (it claimed the day).
    async fn claim_day(&self, day: NaiveDate, now: DateTime<Utc>) -> Result<bool> {
        let run = SpendRun {
            day,
            started_at: now,
        };
        let claim = record(PLATFORM_RECORDS, &day.to_string(), None, None, &run)?;
        match self.store.commit(vec![WriteOp::Insert(claim)]).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Keeps the environment's spend of `days` and tells the budget thresholds it
    /// reached for the first time this month; the number told, `None` for an
    /// environment that is gone.
    async fn record_spend(
        &self,
        org_id: &str,
        environment_id: &str,
        days: &[DaySpend],
    ) -> Result<Option<usize>> {
        let Some(environment) = self.find::<Environment>(org_id, environment_id).await? else {
            return Ok(None);
        };
        let environment = environment.value;
        let mut ops = Vec::new();
        let mut notices = Vec::new();
        for (month, days) in by_month(days) {
            let id = spend_month_id(environment_id, &month);
            let found = self.find::<SpendMonth>(org_id, &id).await?;
            let mut spend = found.as_ref().map_or_else(
                || SpendMonth {
                    environment_id: environment_id.to_string(),
                    month: month.clone(),
                    currency: days[0].currency.clone(),
                    ..SpendMonth::default()
                },
                |found| found.value.clone(),
            );
            for day in &days {
                spend.days.insert(day.day, day.amount);
            }
            if let Some(budget) = environment.monthly_budget {
                for threshold in spend.newly_reached(budget) {
                    notices.push(BudgetNotice {
                        month: month.clone(),
                        threshold,
                        monthly_budget: budget,
                        spent: (spend.total() * 100.0).round() / 100.0,
                        currency: spend.currency.clone(),
                    });
                }
            }
            ops.push(match found {
                Some(mut found) => {
                    found.value = spend;
                    found.replace()?
                }
                None => WriteOp::Insert(record(org_id, &id, Some(environment_id), None, &spend)?),
            });
        }
        self.store.commit(ops).await?;
        let told = notices.len();
        for notice in notices {
            tracing::info!(%environment_id, threshold = notice.threshold, month = %notice.month, "an environment's spend reached a budget threshold");
            if let Err(error) = self.notify_budget(org_id, &environment, notice).await {
                tracing::error!(%environment_id, %error, "queueing a budget notification failed");
            }
        }
        Ok(Some(told))
    }

    /// What the environment's plans estimate and what the bill says for `month`
    /// (`YYYY-MM`; this month when `None`), with its budget.
    pub async fn environment_costs(
        &self,
        caller: &Caller,
        id: &str,
        month: Option<&str>,
    ) -> Result<EnvironmentCosts> {
        let environment = self.load::<Environment>(&caller.org_id, id).await?.value;
        caller.require(Role::Viewer, Some(&environment.project_id))?;
        let month = match month {
            Some(month) => checked_month(month)?,
            None => month_of(self.now().date_naive()),
        };
        let spend = self
            .find::<SpendMonth>(&caller.org_id, &spend_month_id(id, &month))
            .await?;
        Ok(EnvironmentCosts::new(
            &environment,
            month,
            spend.as_ref().map(|found| &found.value),
        ))
    }
}

/// `YYYY-MM`, a real month.
fn checked_month(month: &str) -> Result<String> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .filter(|first| month_of(*first) == month)
        .map(month_of)
        .ok_or_else(|| Error::invalid("month must be YYYY-MM, e.g. 2026-12"))
}

fn by_environment(bill: Vec<DaySpend>) -> BTreeMap<(String, String), Vec<DaySpend>> {
    let mut grouped: BTreeMap<(String, String), Vec<DaySpend>> = BTreeMap::new();
    for day in bill {
        let key = (day.org_id.clone(), day.environment_id.clone());
        grouped.entry(key).or_default().push(day);
    }
    grouped
}

fn by_month(days: &[DaySpend]) -> BTreeMap<String, Vec<DaySpend>> {
    let mut grouped: BTreeMap<String, Vec<DaySpend>> = BTreeMap::new();
    for day in days {
        grouped
            .entry(month_of(day.day))
            .or_default()
            .push(day.clone());
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_read_as_written_or_refused() {
        assert_eq!(checked_month("2026-12").unwrap(), "2026-12");
        for bad in ["2026-13", "2026-1", "26-12", "2026-12-01", "december", ""] {
            assert!(checked_month(bad).is_err(), "{bad}");
        }
    }
}
