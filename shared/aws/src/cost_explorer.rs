//! The SpendSource port on AWS Cost Explorer: GetCostAndUsage, one result per day,
//! grouped by the two cost allocation tags the runner puts on every resource.
//!
//! Cost Explorer names a tag group `<tag key>$<tag value>`, and spend without the tag
//! lands in a group whose value is empty (`envplane:environment$`): that spend belongs
//! to no environment and is left out.

use async_trait::async_trait;
use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
use aws_sdk_costexplorer::types::{
    DateInterval, Granularity, Group, GroupDefinition, GroupDefinitionType, ResultByTime,
};
use chrono::NaiveDate;
use envplane_core::ports::{DaySpend, SpendError, SpendSource, ENVIRONMENT_TAG, ORGANIZATION_TAG};

use crate::error_code::aws_error_code;
use crate::lazy::LazyClient;

/// What was billed at the rates each account actually paid; blended cost would average
/// rates across a consolidated bill's accounts and move spend between environments.
const METRIC: &str = "UnblendedCost";
/// Cost Explorer's date format, in requests and answers.
const DAY_FORMAT: &str = "%Y-%m-%d";

/// The `SpendSource` port on Cost Explorer.
#[derive(Debug, Clone)]
pub struct CostExplorerSpend {
    /// Built on first use: the reaper reads the bill once a day, not at every cold start.
    client: LazyClient<aws_sdk_costexplorer::Client>,
}

impl CostExplorerSpend {
    pub fn new(client: aws_sdk_costexplorer::Client) -> Self {
        Self {
            client: client.into(),
        }
    }

    /// For callers that hold the SDK configuration only (the wiring, the tests).
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: LazyClient::new(sdk, aws_sdk_costexplorer::Client::new),
        }
    }

    /// One page of the answer: the page after `page_token`, or the first.
    async fn page(
        &self,
        period: &DateInterval,
        page_token: Option<String>,
    ) -> Result<GetCostAndUsageOutput, SpendError> {
        self.client
            .get()
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Daily)
            .metrics(METRIC)
            .group_by(tag_group(ORGANIZATION_TAG))
            .group_by(tag_group(ENVIRONMENT_TAG))
            .set_next_page_token(page_token)
            .send()
            .await
            .map_err(|error| {
                SpendError(format!(
                    "Cost Explorer GetCostAndUsage failed: {}",
                    aws_error_code(&error)
                ))
            })
    }
}

#[async_trait]
impl SpendSource for CostExplorerSpend {
    async fn daily_spend(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DaySpend>, SpendError> {
        // Cost Explorer refuses a period that ends where it starts; it holds nothing.
        if from >= until {
            return Ok(Vec::new());
        }
        let period = DateInterval::builder()
            .start(from.format(DAY_FORMAT).to_string())
            .end(until.format(DAY_FORMAT).to_string())
            .build()
            .map_err(|error| SpendError(format!("the period to read: {error}")))?;
        let mut spend = Vec::new();
        let mut page_token = None;
        loop {
            let page = self.page(&period, page_token.clone()).await?;
            spend.extend(day_spends(page.results_by_time())?);
            match page.next_page_token {
                // A service that hands back the token it was given would loop forever.
                Some(next) if page_token.as_ref() == Some(&next) => {
                    return Err(SpendError(format!(
                        "Cost Explorer returned the page token {next:?} it was given"
                    )));
                }
                Some(next) if !next.is_empty() => page_token = Some(next),
                _ => return Ok(spend),
            }
        }
    }
}

fn tag_group(key: &str) -> GroupDefinition {
    GroupDefinition::builder()
        .r#type(GroupDefinitionType::Tag)
        .key(key)
        .build()
}

/// Each tagged environment's spend in `results`, one per day and group; groups
/// without both tags are left out.
fn day_spends(results: &[ResultByTime]) -> Result<Vec<DaySpend>, SpendError> {
    let mut spend = Vec::new();
    for result in results {
        let day = result_day(result)?;
        for group in result.groups() {
            if let Some(one) = group_spend(day, group)? {
                spend.push(one);
            }
        }
    }
    Ok(spend)
}

/// The day a result covers: the start of its (one-day) period.
fn result_day(result: &ResultByTime) -> Result<NaiveDate, SpendError> {
    let start = result
        .time_period()
        .map(DateInterval::start)
        .ok_or_else(|| SpendError("a result without its time period".into()))?;
    NaiveDate::parse_from_str(start, DAY_FORMAT).map_err(|_| {
        SpendError(format!(
            "the start {start:?} of a result is not a YYYY-MM-DD date"
        ))
    })
}

/// A group's spend, or `None` when the group lacks either tag.
fn group_spend(day: NaiveDate, group: &Group) -> Result<Option<DaySpend>, SpendError> {
    let (Some(org_id), Some(environment_id)) = (
        tag_value(group, ORGANIZATION_TAG),
        tag_value(group, ENVIRONMENT_TAG),
    ) else {
        return Ok(None);
    };
    let what = format!("{METRIC} of {environment_id} ({org_id}) on {day}");
    let metric = group
        .metrics()
        .and_then(|metrics| metrics.get(METRIC))
        .ok_or_else(|| SpendError(format!("no {what}")))?;
    let amount = metric.amount().unwrap_or_default();
    let amount = amount
        .parse::<f64>()
        .ok()
        // Rust reads "NaN" and "inf" as numbers; no bill does.
        .filter(|amount| amount.is_finite())
        .ok_or_else(|| SpendError(format!("the {what} is not an amount: {amount:?}")))?;
    let currency = metric
        .unit()
        .filter(|unit| !unit.is_empty())
        .ok_or_else(|| SpendError(format!("the {what} has no unit")))?;
    Ok(Some(DaySpend {
        org_id: org_id.to_string(),
        environment_id: environment_id.to_string(),
        day,
        amount,
        currency: currency.to_string(),
    }))
}

/// The value of tag `key` in a group's keys (`<key>$<value>`); `None` when the group
/// has none or an empty one (untagged spend).
fn tag_value<'a>(group: &'a Group, key: &str) -> Option<&'a str> {
    group.keys().iter().find_map(|group_key| {
        group_key
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('$'))
            .filter(|value| !value.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_costexplorer::types::MetricValue;

    fn group(org: &str, environment: &str, amount: &str) -> Group {
        Group::builder()
            .keys(format!("{ORGANIZATION_TAG}${org}"))
            .keys(format!("{ENVIRONMENT_TAG}${environment}"))
            .metrics(
                METRIC,
                MetricValue::builder().amount(amount).unit("USD").build(),
            )
            .build()
    }

    fn result(start: &str, groups: Vec<Group>) -> ResultByTime {
        let period = DateInterval::builder()
            .start(start)
            .end("2026-12-31")
            .build()
            .unwrap();
        ResultByTime::builder()
            .time_period(period)
            .set_groups(Some(groups))
            .estimated(false)
            .build()
    }

    fn spend(org: &str, environment: &str, day: &str, amount: f64) -> DaySpend {
        DaySpend {
            org_id: org.into(),
            environment_id: environment.into(),
            day: day.parse().unwrap(),
            amount,
            currency: "USD".into(),
        }
    }

    #[test]
    fn each_tagged_group_of_each_day_is_one_day_spend() {
        let results = [
            result(
                "2026-03-01",
                vec![
                    group("org_a", "env_1", "1.25"),
                    group("org_a", "env_2", "0"),
                ],
            ),
            result("2026-03-02", vec![group("org_b", "env_3", "-0.5")]),
        ];
        assert_eq!(
            day_spends(&results).unwrap(),
            vec![
                spend("org_a", "env_1", "2026-03-01", 1.25),
                spend("org_a", "env_2", "2026-03-01", 0.0),
                // A credit or a refund.
                spend("org_b", "env_3", "2026-03-02", -0.5),
            ]
        );
    }

    #[test]
    fn untagged_spend_is_left_out() {
        let no_tag_at_all = Group::builder()
            .keys("SERVICE$Amazon S3")
            .metrics(METRIC, MetricValue::builder().amount("9").build())
            .build();
        let results = [result(
            "2026-03-01",
            vec![
                group("", "", "3.5"),
                group("org_a", "", "2"),
                group("", "env_1", "2"),
                no_tag_at_all,
                group("org_a", "env_1", "1"),
            ],
        )];
        assert_eq!(
            day_spends(&results).unwrap(),
            vec![spend("org_a", "env_1", "2026-03-01", 1.0)]
        );
    }

    #[test]
    fn a_day_without_groups_is_no_spend() {
        assert_eq!(day_spends(&[result("2026-03-01", vec![])]).unwrap(), vec![]);
    }

    #[test]
    fn the_tags_are_read_by_key_not_by_position() {
        let swapped = Group::builder()
            .keys(format!("{ENVIRONMENT_TAG}$env_1"))
            .keys(format!("{ORGANIZATION_TAG}$org_a"))
            .metrics(
                METRIC,
                MetricValue::builder().amount("4").unit("USD").build(),
            )
            .build();
        assert_eq!(
            day_spends(&[result("2026-03-01", vec![swapped])]).unwrap(),
            vec![spend("org_a", "env_1", "2026-03-01", 4.0)]
        );
    }

    #[test]
    fn a_malformed_amount_is_an_error_that_names_it() {
        for amount in ["", "1,5", "NaN", "inf"] {
            let results = [result("2026-03-01", vec![group("org_a", "env_1", amount)])];
            let error = day_spends(&results).unwrap_err().to_string();
            assert!(error.contains(&format!("{amount:?}")), "{error}");
            assert!(error.contains("env_1"), "{error}");
        }
    }

    #[test]
    fn a_malformed_day_is_an_error_that_names_it() {
        let results = [result("03/01/2026", vec![group("org_a", "env_1", "1")])];
        let error = day_spends(&results).unwrap_err().to_string();
        assert!(error.contains("\"03/01/2026\""), "{error}");
    }

    #[test]
    fn a_result_without_its_period_is_an_error() {
        let results = [ResultByTime::builder().build()];
        assert!(day_spends(&results).is_err());
    }

    #[test]
    fn a_tagged_group_without_the_metric_or_its_unit_is_an_error() {
        let no_metric = Group::builder()
            .keys(format!("{ORGANIZATION_TAG}$org_a"))
            .keys(format!("{ENVIRONMENT_TAG}$env_1"))
            .build();
        let no_unit = Group::builder()
            .keys(format!("{ORGANIZATION_TAG}$org_a"))
            .keys(format!("{ENVIRONMENT_TAG}$env_1"))
            .metrics(METRIC, MetricValue::builder().amount("1").build())
            .build();
        for group in [no_metric, no_unit] {
            let error = day_spends(&[result("2026-03-01", vec![group])]).unwrap_err();
            assert!(error.to_string().contains(METRIC), "{error}");
        }
    }
}
