//! Actual spend: what the bill says an environment's resources cost, day by day, and
//! its monthly budget's thresholds (80% and 100%), each told once a month.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cost::CurrentCost;

/// The shares of a monthly budget that are told when spend reaches them.
pub const BUDGET_THRESHOLDS: [u8; 2] = [80, 100];

/// `2026-12`: the month a day belongs to.
pub fn month_of(day: NaiveDate) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

/// The first day of `day`'s month.
pub fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// One environment's spend in one month, as the bill says it day by day, and the
/// budget thresholds already told for that month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendMonth {
    pub environment_id: String,
    pub month: String,
    pub currency: String,
    /// The bill revises recent days: each reading replaces a day's amount.
    pub days: BTreeMap<NaiveDate, f64>,
    /// Thresholds of [`BUDGET_THRESHOLDS`] told this month.
    #[serde(default)]
    pub thresholds_told: Vec<u8>,
}

impl SpendMonth {
    pub fn total(&self) -> f64 {
        self.days.values().sum()
    }

    /// The thresholds of `monthly_budget` this month's spend reached and that were not
    /// told yet, lowest first; they count as told from now on.
    pub fn newly_reached(&mut self, monthly_budget: f64) -> Vec<u8> {
        let used = self.total() / monthly_budget * 100.0;
        let reached: Vec<u8> = BUDGET_THRESHOLDS
            .into_iter()
            .filter(|threshold| used >= f64::from(*threshold))
            .filter(|threshold| !self.thresholds_told.contains(threshold))
            .collect();
        self.thresholds_told.extend(&reached);
        reached
    }
}

/// One day of an environment's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpendDay {
    pub day: NaiveDate,
    /// Unrounded, in `currency`.
    pub amount: f64,
}

/// An environment's actual spend in a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActualSpend {
    #[schema(example = "USD")]
    pub currency: String,
    /// The month's days read so far, rounded to cents.
    pub total: f64,
    pub days: Vec<SpendDay>,
}

/// The environment's budget in a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetUse {
    pub monthly_budget: f64,
    /// How much of it the month's spend used, in percent (rounded to one decimal).
    pub used_percent: f64,
    /// The thresholds (80, 100) told this month.
    pub thresholds_told: Vec<u8>,
}

/// `GET /v1/environments/{id}/costs`: what the plans estimate, what the bill says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentCosts {
    pub environment_id: String,
    /// What its last successful apply's plan priced a month.
    pub estimate: Option<CurrentCost>,
    #[schema(example = "2026-12")]
    pub month: String,
    /// `null` until the daily job has read a bill with the environment's tags in it.
    pub actual: Option<ActualSpend>,
    /// `null` without a monthly budget.
    pub budget: Option<BudgetUse>,
}

impl EnvironmentCosts {
    pub fn new(
        environment: &crate::model::Environment,
        month: String,
        spend: Option<&SpendMonth>,
    ) -> Self {
        let total = spend.map_or(0.0, SpendMonth::total);
        let actual = spend.map(|spend| ActualSpend {
            currency: spend.currency.clone(),
            total: cents(total),
            days: spend
                .days
                .iter()
                .map(|(day, amount)| SpendDay {
                    day: *day,
                    amount: *amount,
                })
                .collect(),
        });
        let budget = environment.monthly_budget.map(|monthly_budget| BudgetUse {
            monthly_budget,
            used_percent: (total / monthly_budget * 1000.0).round() / 10.0,
            thresholds_told: spend.map(|s| s.thresholds_told.clone()).unwrap_or_default(),
        });
        Self {
            environment_id: environment.id.clone(),
            estimate: environment.cost_estimate.clone(),
            month,
            actual,
            budget,
        }
    }
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(days: &[(u32, f64)]) -> SpendMonth {
        SpendMonth {
            days: days
                .iter()
                .map(|(day, amount)| (NaiveDate::from_ymd_opt(2026, 12, *day).unwrap(), *amount))
                .collect(),
            ..SpendMonth::default()
        }
    }

    #[test]
    fn each_threshold_is_told_once_a_month_lowest_first() {
        let mut spend = month(&[(1, 30.0), (2, 40.0)]);
        assert_eq!(spend.newly_reached(100.0), Vec::<u8>::new(), "70%");
        spend
            .days
            .insert(NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(), 15.0);
        assert_eq!(spend.newly_reached(100.0), [80]);
        assert_eq!(spend.newly_reached(100.0), Vec::<u8>::new(), "told");
        spend
            .days
            .insert(NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(), 15.0);
        assert_eq!(spend.newly_reached(100.0), [100]);
        let mut jump = month(&[(1, 250.0)]);
        assert_eq!(jump.newly_reached(100.0), [80, 100]);
    }

    #[test]
    fn months_are_named_and_start_on_the_first() {
        let day = NaiveDate::from_ymd_opt(2027, 1, 9).unwrap();
        assert_eq!(month_of(day), "2027-01");
        assert_eq!(
            first_of_month(day),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
    }
}
