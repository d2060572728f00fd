//! `envplane environment`: deployable instances of a template.

use envplane_core::model::Environment;
use envplane_core::spend::EnvironmentCosts;
use serde::Serialize;
use serde_json::json;

use super::http::{ApiClient, Paging, ProjectFilter};
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an environment from a template.
    Create(NewEnvironment),
    /// List environments, optionally of one project.
    List {
        #[command(flatten)]
        project: ProjectFilter,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one environment.
    Show { id: String },
    /// Change an environment's name, revision, approval, time to live or calendars.
    Update {
        id: String,
        #[command(flatten)]
        changes: EnvironmentChanges,
    },
    /// Extend, shorten or remove an environment's time to live: a destroy is queued
    /// when it ends.
    Ttl {
        id: String,
        #[command(flatten)]
        end: TtlEnd,
    },
    /// What an environment costs: its plans' estimate, the bill's spend this month (or
    /// `--month`), its budget's use.
    Costs {
        id: String,
        /// YYYY-MM; this month when left out.
        #[arg(long)]
        month: Option<String>,
    },
    /// Delete an environment's record and variables (its infrastructure stays). Refused
    /// while deployments of it have not ended or it holds Terraform state.
    Delete {
        id: String,
        /// Delete anyway (admins only, audited): unfinished deployments are cancelled,
        /// the state versions stay in the store.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args, Serialize)]
pub struct NewEnvironment {
    name: String,
    #[arg(long = "project", value_name = "ID")]
    project_id: String,
    #[arg(long = "template", value_name = "ID")]
    template_id: String,
    /// Branch, tag or commit overriding the template's revision.
    #[arg(long)]
    revision: Option<String>,
    /// Deployments wait for an approval.
    #[arg(long)]
    requires_approval: bool,
    /// The key that requested a deployment may approve it too (needs the admin role).
    #[arg(long)]
    allow_self_approval: bool,
    /// Destroy the environment this long after its creation, e.g. 8h.
    #[arg(long)]
    ttl: Option<String>,
    #[command(flatten)]
    #[serde(
        rename = "schedules",
        serialize_with = "Calendars::serialize",
        skip_serializing_if = "Calendars::is_empty"
    )]
    calendars: Calendars,
    /// Minutes one phase of a deployment may run before it fails as timed out
    /// (1 to 1440; 120 when left out).
    #[arg(long = "timeout-minutes", value_name = "MINUTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_timeout_minutes: Option<u32>,
    /// Plan every pull request that touches the environment's code, and report on it
    /// (needs the admin role: pull request code runs with the environment's variables).
    #[arg(long)]
    pull_request_plans: bool,
    /// Apply every push to the environment's branch that touches its code (needs the
    /// admin role).
    #[arg(long)]
    continuous_deployment: bool,
    /// Apply when a drift check (`--drift-cron`) finds changes, with the approval
    /// rules of any apply (needs the admin role).
    #[arg(long)]
    auto_remediate_drift: bool,
    /// What its resources may cost a month (USD on AWS): told at 80% and 100%.
    #[arg(long, value_name = "AMOUNT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_budget: Option<f64>,
    /// Tag the default AWS provider's resources with envplane:organization and
    /// envplane:environment (its default_tags), for the bill per environment.
    #[arg(long)]
    tag_resources: bool,
    /// More files whose change concerns the environment, as a glob from the
    /// repository root (`modules/**`); repeat for several.
    #[arg(long = "watch-path", value_name = "GLOB")]
    watch_paths: Vec<String>,
}

/// At least one change (checked once parsed: flattened calendars are in no group).
#[derive(Debug, clap::Args)]
pub struct EnvironmentChanges {
    #[arg(long)]
    name: Option<String>,
    /// Branch, tag or commit overriding the template's revision.
    #[arg(long, conflicts_with = "follow_template")]
    revision: Option<String>,
    /// Drop the revision override: follow the template's revision again.
    #[arg(long)]
    follow_template: bool,
    /// Needs the admin role.
    #[arg(long, value_name = "true|false")]
    requires_approval: Option<bool>,
    /// Whether the requester may approve its own deployment (needs the admin role).
    #[arg(long, value_name = "true|false")]
    allow_self_approval: Option<bool>,
    /// Destroy the environment this long from now, e.g. 8h.
    #[arg(long, conflicts_with = "no_ttl")]
    ttl: Option<String>,
    /// Remove the time to live: the environment lives until deleted.
    #[arg(long)]
    no_ttl: bool,
    /// Replace all calendars with those given (one left out is removed).
    #[command(flatten)]
    calendars: Calendars,
    /// Remove all calendars.
    #[arg(long, conflicts_with_all = ["deploy_cron", "destroy_cron", "drift_cron"])]
    no_schedules: bool,
    /// Minutes one phase of a deployment may run before it fails as timed out (1 to 1440).
    #[arg(long = "timeout-minutes", value_name = "MINUTES")]
    deployment_timeout_minutes: Option<u32>,
    /// Plan pull requests that touch the environment's code (needs the admin role).
    #[arg(long, value_name = "true|false")]
    pull_request_plans: Option<bool>,
    /// Apply pushes to the environment's branch (needs the admin role).
    #[arg(long, value_name = "true|false")]
    continuous_deployment: Option<bool>,
    /// Apply when a drift check finds changes (needs the admin role).
    #[arg(long, value_name = "true|false")]
    auto_remediate_drift: Option<bool>,
    /// What its resources may cost a month (USD on AWS).
    #[arg(long, value_name = "AMOUNT", conflicts_with = "no_budget")]
    monthly_budget: Option<f64>,
    /// Remove the monthly budget.
    #[arg(long)]
    no_budget: bool,
    /// Tag the default AWS provider's resources for the bill per environment.
    #[arg(long, value_name = "true|false")]
    tag_resources: Option<bool>,
    /// Replace the watched path globs; repeat for several.
    #[arg(
        long = "watch-path",
        value_name = "GLOB",
        conflicts_with = "no_watch_paths"
    )]
    watch_paths: Vec<String>,
    /// Watch only the template's directory again.
    #[arg(long)]
    no_watch_paths: bool,
}

/// Deploy, destroy and drift check calendars: five-field cron expressions, each read
/// in its time zone (UTC unless given).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Calendars {
    /// Apply on this calendar, e.g. "0 8 * * 1-5" (weekdays at 08:00).
    #[arg(long, value_name = "CRON")]
    deploy_cron: Option<String>,
    /// The IANA time zone the deploy calendar is read in, e.g. Europe/Berlin.
    #[arg(long, value_name = "ZONE", requires = "deploy_cron")]
    deploy_time_zone: Option<String>,
    /// Destroy on this calendar, e.g. "0 20 * * 1-5" (weekdays at 20:00).
    #[arg(long, value_name = "CRON")]
    destroy_cron: Option<String>,
    /// The IANA time zone the destroy calendar is read in.
    #[arg(long, value_name = "ZONE", requires = "destroy_cron")]
    destroy_time_zone: Option<String>,
    /// Check for drift on this calendar (a plan that applies nothing unless
    /// auto-remediation is on), e.g. "0 6 * * *".
    #[arg(long, value_name = "CRON")]
    drift_cron: Option<String>,
    /// The IANA time zone the drift calendar is read in.
    #[arg(long, value_name = "ZONE", requires = "drift_cron")]
    drift_time_zone: Option<String>,
}

impl Calendars {
    fn is_empty(&self) -> bool {
        self.deploy_cron.is_none() && self.destroy_cron.is_none() && self.drift_cron.is_none()
    }

    /// The API's `schedules` object.
    fn schedules(&self) -> serde_json::Value {
        let calendar = |cron: &Option<String>, zone: &Option<String>| {
            cron.as_ref()
                .map(|cron| json!({ "cron": cron, "time_zone": zone.as_deref().unwrap_or("UTC") }))
        };
        json!({
            "deploy": calendar(&self.deploy_cron, &self.deploy_time_zone),
            "destroy": calendar(&self.destroy_cron, &self.destroy_time_zone),
            "drift": calendar(&self.drift_cron, &self.drift_time_zone),
        })
    }

    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.schedules().serialize(serializer)
    }
}

/// A new end of a time to live: exactly one of these.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TtlEnd {
    /// End it this long from now, e.g. 8h or 7d.
    #[arg(long)]
    ttl: Option<String>,
    /// End it at this time (RFC 3339, e.g. 2026-12-24T18:00:00Z).
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// Remove it: the environment lives until deleted.
    #[arg(long)]
    remove: bool,
}

impl TtlEnd {
    fn body(&self) -> serde_json::Value {
        match (&self.ttl, &self.expires_at) {
            (Some(ttl), _) => json!({ "ttl": ttl }),
            (_, Some(at)) => json!({ "expires_at": at }),
            _ => json!({ "ttl": null }),
        }
    }
}

/// The PATCH body: an absent field stays as it is, a `null` one is cleared.
#[derive(Debug, Serialize)]
struct EnvironmentPatch<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requires_approval: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_self_approval: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedules: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_timeout_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_request_plans: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continuous_deployment: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_remediate_drift: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_budget: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_resources: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watch_paths: Option<&'a [String]>,
}

impl EnvironmentChanges {
    fn patch(&self) -> EnvironmentPatch<'_> {
        EnvironmentPatch {
            name: self.name.as_deref(),
            revision: set_or_clear(self.revision.as_deref(), self.follow_template),
            requires_approval: self.requires_approval,
            allow_self_approval: self.allow_self_approval,
            ttl: set_or_clear(self.ttl.as_deref(), self.no_ttl),
            schedules: self.calendars(),
            deployment_timeout_minutes: self.deployment_timeout_minutes,
            pull_request_plans: self.pull_request_plans,
            continuous_deployment: self.continuous_deployment,
            auto_remediate_drift: self.auto_remediate_drift,
            monthly_budget: if self.no_budget {
                Some(None)
            } else {
                self.monthly_budget.map(Some)
            },
            tag_resources: self.tag_resources,
            watch_paths: (self.no_watch_paths || !self.watch_paths.is_empty())
                .then_some(self.watch_paths.as_slice()),
        }
    }
}

impl EnvironmentChanges {
    /// The calendars to send, if they change.
    fn calendars(&self) -> Option<serde_json::Value> {
        (self.no_schedules || !self.calendars.is_empty()).then(|| self.calendars.schedules())
    }

    /// The patch, or a usage error (exit code 2, like clap's) when it changes nothing.
    fn checked_patch(&self) -> EnvironmentPatch<'_> {
        let patch = self.patch();
        if serde_json::to_value(&patch).is_ok_and(|body| body == json!({})) {
            clap::Error::raw(
                clap::error::ErrorKind::MissingRequiredArgument,
                "nothing to change: give at least one option (see --help)\n",
            )
            .exit();
        }
        patch
    }
}

/// `Some(None)` (sent as `null`) clears the field; `None` leaves it out.
fn set_or_clear(value: Option<&str>, clear: bool) -> Option<Option<&str>> {
    if clear {
        Some(None)
    } else {
        value.map(Some)
    }
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(input) => {
            let environment = api.post(&["v1", "environments"], &input).await?;
            output::print_one::<Environment>(format, environment)?;
        }
        Command::List { project, paging } => {
            let filters = project.query();
            let listing = api.list(&["v1", "environments"], &filters, &paging).await?;
            output::print_list::<Environment>(format, listing)?;
        }
        Command::Show { id } => {
            let environment = api.get(&["v1", "environments", &id]).await?;
            output::print_one::<Environment>(format, environment)?;
        }
        Command::Update { id, changes } => {
            let path = ["v1", "environments", id.as_str()];
            let environment = api.patch(&path, &changes.checked_patch()).await?;
            output::print_one::<Environment>(format, environment)?;
        }
        Command::Ttl { id, end } => {
            let path = ["v1", "environments", id.as_str(), "ttl"];
            let environment = api.post(&path, &end.body()).await?;
            output::print_one::<Environment>(format, environment)?;
        }
        Command::Costs { id, month } => {
            let path = ["v1", "environments", id.as_str(), "costs"];
            let query: Vec<(&str, &str)> = month.iter().map(|m| ("month", m.as_str())).collect();
            let costs = api.get_query(&path, &query).await?;
            match format {
                Format::Json => output::print_json(&costs),
                Format::Table => println!("{}", costs_text(&from_json(costs)?)),
            }
        }
        Command::Delete { id, force } => {
            let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
            api.delete_query(&["v1", "environments", &id], query)
                .await?;
            let message = format!("Deleted environment {id}.");
            output::print_done(format, &message, json!({ "id": id, "deleted": true }));
        }
    }
    Ok(())
}

impl Render for Environment {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "template",
        "revision",
        "approval",
        "expires",
        "calendars",
        "drift",
    ];

    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.template_id.clone(),
            self.revision
                .clone()
                .unwrap_or_else(|| "(template)".to_string()),
            match (self.requires_approval, self.allow_self_approval) {
                (false, _) => "-",
                (true, false) => "required",
                (true, true) => "required (self allowed)",
            }
            .to_string(),
            self.expires_at
                .map_or_else(|| "-".to_string(), |at| at.to_rfc3339()),
            calendars(self),
            self.drift_status.as_str().to_string(),
        ]
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(value)?)
}

/// The estimate, the month's spend and the budget, a line each.
fn costs_text(costs: &EnvironmentCosts) -> String {
    let estimate = costs.estimate.as_ref().map_or_else(
        || "no successful apply priced yet".to_string(),
        |e| {
            format!(
                "{} {:.2} a month ({} unpriced)",
                e.currency, e.monthly, e.unpriced
            )
        },
    );
    let actual = costs.actual.as_ref().map_or_else(
        || "no bill read yet".to_string(),
        |a| format!("{} {:.2} over {} day(s)", a.currency, a.total, a.days.len()),
    );
    let budget = costs.budget.as_ref().map_or_else(
        || "none".to_string(),
        |b| {
            format!(
                "{:.2} a month, {:.1}% used",
                b.monthly_budget, b.used_percent
            )
        },
    );
    format!(
        "Estimate: {estimate}\nSpend in {}: {actual}\nBudget: {budget}",
        costs.month
    )
}

/// `deploy 0 8 * * 1-5 Europe/Berlin; destroy ...`, or `-`.
fn calendars(environment: &Environment) -> String {
    let schedules = &environment.schedules;
    let described: Vec<String> = [
        ("deploy", &schedules.deploy),
        ("destroy", &schedules.destroy),
        ("drift", &schedules.drift),
    ]
    .into_iter()
    .filter_map(|(job, schedule)| {
        let schedule = schedule.as_ref()?;
        Some(format!("{job} {} {}", schedule.cron, schedule.time_zone))
    })
    .collect();
    if described.is_empty() {
        "-".into()
    } else {
        described.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Update {
        #[command(flatten)]
        changes: EnvironmentChanges,
    }

    fn patch(args: &[&str]) -> serde_json::Value {
        let update =
            Update::try_parse_from(std::iter::once("update").chain(args.iter().copied())).unwrap();
        serde_json::to_value(update.changes.patch()).unwrap()
    }

    #[test]
    fn patches_send_only_what_changes() {
        assert_eq!(patch(&["--name", "prod"]), json!({ "name": "prod" }));
        assert_eq!(
            patch(&[
                "--revision",
                "v2",
                "--ttl",
                "8h",
                "--requires-approval",
                "false"
            ]),
            json!({ "revision": "v2", "ttl": "8h", "requires_approval": false })
        );
    }

    #[test]
    fn watched_paths_are_replaced_or_dropped_whole() {
        assert_eq!(
            patch(&["--watch-path", "modules/**", "--watch-path", "*.tfvars"]),
            json!({ "watch_paths": ["modules/**", "*.tfvars"] })
        );
        assert_eq!(patch(&["--no-watch-paths"]), json!({ "watch_paths": [] }));
        assert_eq!(
            patch(&["--pull-request-plans", "true"]),
            json!({ "pull_request_plans": true })
        );
    }

    #[test]
    fn calendars_are_sent_whole() {
        assert_eq!(
            patch(&[
                "--deploy-cron",
                "0 8 * * 1-5",
                "--deploy-time-zone",
                "Europe/Berlin"
            ]),
            json!({ "schedules": {
                "deploy": { "cron": "0 8 * * 1-5", "time_zone": "Europe/Berlin" },
                "destroy": null,
                "drift": null,
            }})
        );
        assert_eq!(
            patch(&["--no-schedules"]),
            json!({ "schedules": { "deploy": null, "destroy": null, "drift": null } })
        );
    }

    #[test]
    fn clearing_flags_send_null() {
        assert_eq!(
            patch(&["--follow-template", "--no-ttl"]),
            json!({ "revision": null, "ttl": null })
        );
    }

    #[test]
    fn contradictions_and_empty_updates_are_refused() {
        let parse = |args: &[&str]| {
            Update::try_parse_from(std::iter::once("update").chain(args.iter().copied()))
        };
        assert!(parse(&["--revision", "v2", "--follow-template"]).is_err());
        assert!(parse(&["--ttl", "8h", "--no-ttl"]).is_err());
        assert!(parse(&["--deploy-time-zone", "UTC"]).is_err());
        assert!(parse(&["--destroy-cron", "0 20 * * *", "--no-schedules"]).is_err());
        assert!(parse(&["--drift-cron", "0 6 * * *", "--no-schedules"]).is_err());
        assert_eq!(patch(&[]), json!({}));
    }
}
