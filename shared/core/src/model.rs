//! The objects users manage, as the API shows them, and the inputs that create them.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::auth::Role;
use crate::cost::CurrentCost;
use crate::drift::{DriftCheck, DriftStatus};
use crate::notification::{NotificationEvent, TargetKind};
use crate::schedule::{Calendar, CalendarInput, ScheduledJob};
use crate::validate::{MAX_VARIABLE_VALUE_LEN, MIN_SENSITIVE_VALUE_LEN};

/// A tenant. Every other object belongs to exactly one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Set for a key limited to one project.
    pub project_id: Option<String>,
    /// The first characters of the key, to tell keys apart; the key itself is not kept.
    pub hint: String,
    /// Whether this is the platform operator's key (may create organizations).
    pub operator: bool,
    /// The key that created this one; `None` for keys made at start-up.
    pub created_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new key: the only time its secret is ever shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret key. Store it now: it cannot be shown again.
    #[serde(serialize_with = "expose_secret")]
    #[schema(value_type = String)]
    pub key: SecretString,
}

/// A new organization with its first admin key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOrganization {
    #[serde(flatten)]
    pub organization: Organization,
    pub admin_key: CreatedApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IacType {
    Terraform,
}

/// Where an environment's code comes from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub repository: String,
    pub revision: String,
    /// Directory inside the repository; `.` for its root.
    pub path: String,
    pub iac_type: IacType,
    pub iac_version: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One deployable instance of a template.
fn default_deployment_timeout() -> u32 {
    crate::validate::DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub template_id: String,
    /// Overrides the template's revision when set.
    pub revision: Option<String>,
    pub requires_approval: bool,
    /// Whether the key that requested a deployment may also approve it. Off by default:
    /// an approval is a second pair of eyes.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// How long the environment lives from when its time to live was last set, e.g.
    /// `8h` (`None`: forever).
    pub ttl: Option<String>,
    /// When the environment's time to live ends and a destroy is queued (`None`: never).
    /// Set from `ttl`, or directly through `POST /v1/environments/{id}/ttl`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Deploy and destroy on a calendar.
    #[serde(default)]
    pub schedules: Schedules,
    /// How long one phase of a deployment may run before it is stopped and fails with
    /// "timed out after …" (1 to 1440; 120 by default).
    #[serde(default = "default_deployment_timeout")]
    pub deployment_timeout_minutes: u32,
    /// Whether a drift check that finds changes queues an apply (approval rules apply
    /// as for any other). Changing it needs the admin role.
    #[serde(default)]
    pub auto_remediate_drift: bool,
    /// What the last drift check found (`schedules.drift` sets when checks run).
    #[serde(default)]
    pub drift_status: DriftStatus,
    /// The last drift check, and the resources it would change.
    #[serde(default)]
    pub drift_check: Option<DriftCheck>,
    /// What its resources cost a month, as its last successful apply's plan priced
    /// them (`None` before one, and after a destroy).
    #[serde(default)]
    pub cost_estimate: Option<CurrentCost>,
    /// Whether its last successful apply or destroy was an apply: what drift checks
    /// look at (a destroyed environment is not checked).
    #[serde(default)]
    pub deployed: bool,
    /// What its resources may cost a month (in the bill's currency, USD on AWS):
    /// `budget.threshold` is told when the bill reaches 80% and 100% of it.
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    /// Tag every resource of the template's default AWS provider with
    /// `envplane:organization` and `envplane:environment` (its `default_tags`, which
    /// this replaces), so the bill can be read per environment.
    #[serde(default)]
    pub tag_resources: bool,
    /// Plan every pull request of the template's repository that touches the template's
    /// directory or `watch_paths`, and report on the pull request. Pull request code
    /// runs with the environment's variables: changing it needs the admin role.
    #[serde(default)]
    pub pull_request_plans: bool,
    /// Apply every push to the environment's branch (its revision) that touches the
    /// template's directory or `watch_paths`; approval rules still apply. Changing it
    /// needs the admin role.
    #[serde(default)]
    pub continuous_deployment: bool,
    /// More files whose change concerns the environment, as globs from the repository
    /// root (`modules/**`); `*` stays within one directory.
    #[serde(default)]
    pub watch_paths: Vec<String>,
    /// The outputs of the last successful apply (sensitive ones `null`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Environment {
    /// When each of its scheduled jobs runs next.
    pub fn next_runs(&self) -> Vec<(ScheduledJob, DateTime<Utc>)> {
        let calendars = [
            ScheduledJob::Deploy,
            ScheduledJob::Destroy,
            ScheduledJob::Drift,
        ]
        .into_iter()
        .filter_map(|job| Some((job, self.schedules.get(job)?.next_run_at)));
        self.expires_at
            .map(|at| (ScheduledJob::Ttl, at))
            .into_iter()
            .chain(calendars)
            .collect()
    }

    /// When `job` runs next, if it is scheduled.
    pub fn next_run(&self, job: ScheduledJob) -> Option<DateTime<Utc>> {
        self.next_runs()
            .into_iter()
            .find_map(|(scheduled, at)| (scheduled == job).then_some(at))
    }
}

/// An environment's calendars.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Schedules {
    /// Queues an apply (approval rules apply as for any other).
    pub deploy: Option<Schedule>,
    /// Queues a destroy.
    pub destroy: Option<Schedule>,
    /// Queues a drift check: a plan that never applies (unless `auto_remediate_drift`).
    #[serde(default)]
    pub drift: Option<Schedule>,
}

impl Schedules {
    /// The calendar of `job`, if it has one (a time to live is no calendar).
    pub fn get(&self, job: ScheduledJob) -> Option<&Schedule> {
        match job {
            ScheduledJob::Deploy => self.deploy.as_ref(),
            ScheduledJob::Destroy => self.destroy.as_ref(),
            ScheduledJob::Drift => self.drift.as_ref(),
            ScheduledJob::Ttl => None,
        }
    }

    /// Where the calendar of `job` is kept; `None` for a time to live.
    pub fn slot(&mut self, job: ScheduledJob) -> Option<&mut Option<Schedule>> {
        match job {
            ScheduledJob::Deploy => Some(&mut self.deploy),
            ScheduledJob::Destroy => Some(&mut self.destroy),
            ScheduledJob::Drift => Some(&mut self.drift),
            ScheduledJob::Ttl => None,
        }
    }
}

/// A calendar, and what the scheduler knows of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    #[schema(example = "0 20 * * 1-5")]
    pub cron: String,
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// When it fires next. A run missed while the platform was down happens once, at
    /// the next round, and the next run is counted from then.
    pub next_run_at: DateTime<Utc>,
    /// The deployment it queued last: while that one has not ended, a run queues
    /// nothing.
    #[serde(default)]
    pub last_deployment_id: Option<String>,
}

impl Schedule {
    /// A schedule of `calendar`, next firing after `now`.
    pub fn new(calendar: &Calendar, now: DateTime<Utc>) -> crate::Result<Self> {
        let input = calendar.input();
        Ok(Self {
            cron: input.cron.clone(),
            time_zone: input.time_zone.clone(),
            next_run_at: next_run(calendar, now)?,
            last_deployment_id: None,
        })
    }

    pub fn calendar(&self) -> crate::Result<Calendar> {
        Calendar::parse(CalendarInput {
            cron: self.cron.clone(),
            time_zone: self.time_zone.clone(),
        })
    }
}

/// When `calendar` fires after `now`; one that fires no more is refused.
pub fn next_run(calendar: &Calendar, now: DateTime<Utc>) -> crate::Result<DateTime<Utc>> {
    calendar.next_after(now).ok_or_else(|| {
        crate::Error::invalid(format!(
            "cron {:?} never fires again",
            calendar.input().cron
        ))
    })
}

/// Where a project's notifications go. The URL's path and the signing secret are never
/// shown: a Slack webhook URL is itself a credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationTarget {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub kind: TargetKind,
    /// Scheme, host and port of the URL.
    pub origin: String,
    pub events: Vec<NotificationEvent>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNotificationTarget {
    pub project_id: String,
    #[schema(schema_with = rules::name)]
    pub name: String,
    pub kind: TargetKind,
    /// HTTPS, on a public host.
    #[schema(
        max_length = 2048,
        example = "https://hooks.slack.com/services/T000/B000/XXXX"
    )]
    pub url: String,
    /// At least one.
    pub events: Vec<NotificationEvent>,
}

/// A new target, with the secret its webhook deliveries are signed with: shown this
/// once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedNotificationTarget {
    #[serde(flatten)]
    pub target: NotificationTarget,
    /// For `webhook` targets: check `X-Envplane-Signature-256` (`sha256=` and the hex
    /// HMAC-SHA256 of the body under this secret). `null` for Slack.
    #[serde(serialize_with = "expose_optional_secret")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
}

/// A new end of an environment's time to live: `ttl` or `expires_at`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, max_properties = 1)]
pub struct SetTtl {
    /// Destroy the environment this long from now; `null` removes the time to live.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = rules::optional_ttl)]
    pub ttl: Option<Option<String>>,
    /// Destroy the environment at this time (in the future, within 366 days).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Calendars as a client sets them: a job left out (or `null`) has none.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    #[serde(default, deserialize_with = "object")]
    pub deploy: Option<CalendarInput>,
    #[serde(default, deserialize_with = "object")]
    pub destroy: Option<CalendarInput>,
    /// A drift check: a plan whose changes mark the environment drifted.
    #[serde(default, deserialize_with = "object")]
    pub drift: Option<CalendarInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariableKind {
    /// Passed to Terraform as an input variable.
    #[default]
    Terraform,
    /// Set in the environment of the IaC process and hooks.
    Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Organization,
    Project,
    Template,
    Environment,
}

/// A variable as the API shows it: a sensitive one never carries its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Variable {
    pub name: String,
    /// `null` when `sensitive` is true: sensitive values are write-only.
    pub value: Option<String>,
    pub sensitive: bool,
    pub kind: VariableKind,
    pub scope: ScopeKind,
    pub scope_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: String,
    /// The id of the API key that acted.
    pub actor_key_id: String,
    pub actor_name: String,
    /// `<object>.<verb>`, e.g. `environment.create`.
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    /// The id the server gave the request.
    pub request_id: String,
    /// The `x-request-id` the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// One page of a listing. Pass `next` back as `cursor` to get the following page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    #[schema(schema_with = rules::name)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(schema_with = rules::name)]
    pub name: String,
    pub role: Role,
    /// Limit the key to one project.
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    #[schema(schema_with = rules::name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = rules::optional_description)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[schema(schema_with = rules::optional_name)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = rules::optional_description)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    #[schema(schema_with = rules::name)]
    pub name: String,
    pub project_id: String,
    #[schema(schema_with = rules::repository)]
    pub repository: String,
    /// Branch, tag or commit; defaults to `main`.
    #[serde(default)]
    #[schema(schema_with = rules::optional_revision)]
    pub revision: Option<String>,
    /// Directory inside the repository; defaults to its root.
    #[serde(default)]
    #[schema(schema_with = rules::optional_path)]
    pub path: Option<String>,
    #[serde(default)]
    pub iac_type: Option<IacType>,
    #[schema(schema_with = rules::iac_version)]
    pub iac_version: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    #[schema(schema_with = rules::optional_name)]
    pub name: Option<String>,
    #[schema(schema_with = rules::optional_repository)]
    pub repository: Option<String>,
    #[schema(schema_with = rules::optional_revision)]
    pub revision: Option<String>,
    #[schema(schema_with = rules::optional_path)]
    pub path: Option<String>,
    pub iac_type: Option<IacType>,
    #[schema(schema_with = rules::optional_iac_version)]
    pub iac_version: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    #[schema(schema_with = rules::name)]
    pub name: String,
    pub project_id: String,
    pub template_id: String,
    #[serde(default)]
    #[schema(schema_with = rules::optional_revision)]
    pub revision: Option<String>,
    #[serde(default)]
    pub requires_approval: bool,
    /// Setting it needs the admin role.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// Destroys the environment this long after its creation (`POST
    /// /v1/environments/{id}/ttl` extends it).
    #[serde(default)]
    #[schema(schema_with = rules::optional_ttl)]
    pub ttl: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub schedules: Option<ScheduleSettings>,
    /// 1 to 1440 minutes; 120 when left out.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(schema_with = rules::optional_timeout_minutes)]
    pub deployment_timeout_minutes: Option<u32>,
    /// Setting it needs the admin role.
    #[serde(default)]
    pub auto_remediate_drift: bool,
    #[serde(default)]
    #[schema(schema_with = rules::optional_budget)]
    pub monthly_budget: Option<f64>,
    #[serde(default)]
    pub tag_resources: bool,
    /// Setting it needs the admin role.
    #[serde(default)]
    pub pull_request_plans: bool,
    /// Setting it needs the admin role.
    #[serde(default)]
    pub continuous_deployment: bool,
    #[serde(default)]
    #[schema(schema_with = rules::watch_paths)]
    pub watch_paths: Vec<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[schema(schema_with = rules::optional_name)]
    pub name: Option<String>,
    /// `null` clears the override and follows the template's revision again.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = rules::optional_revision)]
    pub revision: Option<Option<String>>,
    /// Changing it needs the admin role.
    pub requires_approval: Option<bool>,
    /// Changing it needs the admin role.
    pub allow_self_approval: Option<bool>,
    /// Destroys the environment this long from now; `null` removes the time to live.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = rules::optional_ttl)]
    pub ttl: Option<Option<String>>,
    /// Replaces both calendars: a job left out (or `null`) has none after.
    #[serde(default, deserialize_with = "object")]
    pub schedules: Option<ScheduleSettings>,
    /// 1 to 1440 minutes.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(schema_with = rules::optional_timeout_minutes)]
    pub deployment_timeout_minutes: Option<u32>,
    /// Changing it needs the admin role.
    pub auto_remediate_drift: Option<bool>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = rules::optional_budget)]
    pub monthly_budget: Option<Option<f64>>,
    pub tag_resources: Option<bool>,
    /// Changing it needs the admin role.
    pub pull_request_plans: Option<bool>,
    /// Changing it needs the admin role.
    pub continuous_deployment: Option<bool>,
    #[schema(schema_with = rules::optional_watch_paths)]
    pub watch_paths: Option<Vec<String>>,
}

/// An organization's GitHub connection, as the API shows it: never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitHubConnection {
    /// `app` (a GitHub App installation) or `token`.
    pub mode: String,
    pub app_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Connects the organization to GitHub: a GitHub App installation (app id,
/// installation id, the App's private key) or, for local use, a token; and the webhook
/// secret. Secrets are write-only. Its schema is written out below: one of two shapes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutGitHubConnection {
    #[serde(default, deserialize_with = "whole_id")]
    pub app_id: Option<u64>,
    #[serde(default, deserialize_with = "whole_id")]
    pub installation_id: Option<u64>,
    #[serde(default)]
    pub private_key: Option<SecretString>,
    #[serde(default)]
    pub token: Option<SecretString>,
    pub webhook_secret: SecretString,
}

/// The shortest webhook secret taken: GitHub signs with it, so it must not be guessable.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;
const MAX_CONNECTION_SECRET_CHARS: usize = 16 * 1024;
/// How an App's private key (PEM) begins.
const PRIVATE_KEY_PATTERN: &str = "^-----BEGIN (RSA )?PRIVATE KEY-----";

impl PutGitHubConnection {
    /// Checks the shape: all of the App's fields or a token, never both, and secrets of
    /// sensible length.
    pub fn checked(self) -> crate::Result<Self> {
        let invalid = |message: &str| Err(crate::Error::invalid(message));
        let chars = |secret: &SecretString| secret.expose_secret().chars().count();
        let webhook_secret = chars(&self.webhook_secret);
        if !(MIN_WEBHOOK_SECRET_CHARS..=MAX_CONNECTION_SECRET_CHARS).contains(&webhook_secret) {
            return invalid("webhook_secret must be 16 to 16384 characters");
        }
        match (
            &self.app_id,
            &self.installation_id,
            &self.private_key,
            &self.token,
        ) {
            (Some(app_id), Some(installation_id), Some(key), None) => {
                let pem = key.expose_secret();
                let looks_like_pem = pem.starts_with("-----BEGIN PRIVATE KEY-----")
                    || pem.starts_with("-----BEGIN RSA PRIVATE KEY-----");
                if *app_id == 0 || *installation_id == 0 {
                    return invalid("app_id and installation_id are positive numbers");
                }
                if !looks_like_pem || chars(key) > MAX_CONNECTION_SECRET_CHARS {
                    return invalid(
                        "private_key must be the App's private key in PEM, as GitHub gives it",
                    );
                }
            }
            (None, None, None, Some(token)) => {
                if !(1..=MAX_CONNECTION_SECRET_CHARS).contains(&chars(token)) {
                    return invalid("token must be 1 to 16384 characters");
                }
            }
            _ => return invalid(
                "give app_id, installation_id and private_key (a GitHub App), or token, not both",
            ),
        }
        Ok(self)
    }
}

impl PartialSchema for PutGitHubConnection {
    fn schema() -> RefOr<Schema> {
        let secret = |min: usize, pattern: Option<&str>| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(min))
                .max_length(Some(MAX_CONNECTION_SECRET_CHARS))
                .pattern(pattern)
                .description(Some("Write-only: sealed, never shown again."))
        };
        let id = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_SAFE_INTEGER))
        };
        let webhook_secret = || secret(MIN_WEBHOOK_SECRET_CHARS, None);
        let app = ObjectBuilder::new()
            .property("app_id", id())
            .property("installation_id", id())
            .property("private_key", secret(1, Some(PRIVATE_KEY_PATTERN)))
            .property("webhook_secret", webhook_secret())
            .required("app_id")
            .required("installation_id")
            .required("private_key")
            .required("webhook_secret")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let token = ObjectBuilder::new()
            .property("token", secret(1, None))
            .property("webhook_secret", webhook_secret())
            .required("token")
            .required("webhook_secret")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new().item(app).item(token).into()
    }
}

impl ToSchema for PutGitHubConnection {}

/// A variable's value and kind. Its schema is written out below: a sensitive value's
/// least length depends on `sensitive`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutVariable {
    pub value: SecretString,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub kind: VariableKind,
}

impl PartialSchema for PutVariable {
    fn schema() -> RefOr<Schema> {
        let variant = |sensitive: bool, min_chars: usize| {
            let object = ObjectBuilder::new()
                .property(
                    "value",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(min_chars))
                        .max_length(Some(MAX_VARIABLE_VALUE_LEN))
                        .pattern(Some(r"^[^\u0000]*$")),
                )
                .required("value")
                .property(
                    "sensitive",
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .enum_values(Some([sensitive])),
                )
                .property("kind", Ref::from_schema_name(VariableKind::name()))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if sensitive {
                object.required("sensitive")
            } else {
                object
            }
        };
        OneOfBuilder::new()
            .description(Some(format!(
                "A variable's value (no NUL: it reaches the sandbox as an environment \
                 variable); a sensitive one is sealed and masked, so it has at least \
                 {MIN_SENSITIVE_VALUE_LEN} characters. `kind` is `terraform` when left out."
            )))
            .item(variant(false, 0))
            .item(variant(true, MIN_SENSITIVE_VALUE_LEN))
            .into()
    }
}

impl ToSchema for PutVariable {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((VariableKind::name().into(), VariableKind::schema()));
    }
}

/// The OpenAPI schemas of fields whose rules live in [`crate::validate`], from the same
/// rules.
mod rules {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    use utoipa::openapi::{Array, Object, RefOr, Schema};

    use crate::validate::{
        IAC_VERSION, MAX_DEPLOYMENT_TIMEOUT_MINUTES, MAX_DESCRIPTION_LEN, MAX_WATCH_PATHS, NAME,
        REPOSITORY, REPOSITORY_PATH, REVISION, TTL, WATCH_PATH,
    };

    pub fn name() -> Object {
        NAME.schema()
    }
    pub fn optional_name() -> RefOr<Schema> {
        NAME.nullable_schema()
    }
    pub fn repository() -> Object {
        REPOSITORY.schema()
    }
    pub fn optional_repository() -> RefOr<Schema> {
        REPOSITORY.nullable_schema()
    }
    pub fn optional_revision() -> RefOr<Schema> {
        REVISION.nullable_schema()
    }
    pub fn optional_path() -> RefOr<Schema> {
        REPOSITORY_PATH.nullable_schema()
    }
    pub fn iac_version() -> Object {
        IAC_VERSION.schema()
    }
    pub fn optional_iac_version() -> RefOr<Schema> {
        IAC_VERSION.nullable_schema()
    }
    pub fn optional_ttl() -> RefOr<Schema> {
        TTL.nullable_schema()
    }
    pub fn optional_description() -> Object {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
            .max_length(Some(MAX_DESCRIPTION_LEN))
            .build()
    }
    pub fn optional_timeout_minutes() -> Object {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(MAX_DEPLOYMENT_TIMEOUT_MINUTES))
            .build()
    }
    pub fn optional_budget() -> Object {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Number, Type::Null]))
            .exclusive_minimum(Some(0))
            .maximum(Some(crate::validate::MAX_MONTHLY_BUDGET))
            .description(Some(
                "What the environment's resources may cost a month, in the bill's currency (USD on AWS).",
            ))
            .build()
    }
    pub fn watch_paths() -> Array {
        ArrayBuilder::new()
            .items(WATCH_PATH.schema())
            .max_items(Some(MAX_WATCH_PATHS))
            .build()
    }
    pub fn optional_watch_paths() -> Array {
        let mut schema = watch_paths();
        schema.schema_type = SchemaType::Array(vec![Type::Array, Type::Null]);
        schema
    }
}

/// A whole number, also written with a zero fraction (`5.0`): JSON Schema counts both as
/// integers, so a client generated from the document may send either.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    whole_number_up_to(deserializer, u64::from(u32::MAX))?
        .map(u32::try_from)
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// The largest whole number every JSON reader holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// [`whole_number`] for ids: up to [`MAX_SAFE_INTEGER`].
fn whole_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    whole_number_up_to(deserializer, MAX_SAFE_INTEGER)
}

fn whole_number_up_to<'de, D: Deserializer<'de>>(
    deserializer: D,
    max: u64,
) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && (0.0..=max as f64).contains(value))
            .map(|value| value as u64)
    });
    whole
        .filter(|value| *value <= max)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number from 0 to {max}")))
}

/// Tells a field that is absent (`None`) from one set to `null` (`Some(None)`).
/// A nested object, `null` or absent: serde alone would also take an array for a struct.
fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(_) => Err(serde::de::Error::custom("expected an object")),
    }
}

fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn expose_optional_secret<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secret
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .serialize(serializer)
}

fn expose_secret<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_absent_from_null() {
        let absent: UpdateEnvironment = serde_json::from_str("{}").unwrap();
        assert!(absent.ttl.is_none());
        let cleared: UpdateEnvironment = serde_json::from_str(r#"{"ttl": null}"#).unwrap();
        assert_eq!(cleared.ttl, Some(None));
        let set: UpdateEnvironment = serde_json::from_str(r#"{"ttl": "8h"}"#).unwrap();
        assert_eq!(set.ttl, Some(Some("8h".into())));
    }

    #[test]
    fn whole_numbers_may_carry_a_zero_fraction() {
        let parse = |json: &str| serde_json::from_str::<UpdateEnvironment>(json);
        let minutes = |json| parse(json).unwrap().deployment_timeout_minutes;
        assert_eq!(minutes(r#"{"deployment_timeout_minutes": 30}"#), Some(30));
        assert_eq!(minutes(r#"{"deployment_timeout_minutes": 30.0}"#), Some(30));
        assert_eq!(minutes(r#"{"deployment_timeout_minutes": null}"#), None);
        assert_eq!(minutes("{}"), None);
        for bad in ["30.5", "-1", "1e10", "\"30\""] {
            let json = format!(r#"{{"deployment_timeout_minutes": {bad}}}"#);
            assert!(parse(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<CreateProject>(r#"{"name":"a","nme":"b"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"));
    }

    #[test]
    fn secret_values_do_not_debug_print() {
        let put: PutVariable =
            serde_json::from_str(r#"{"value":"hunter2","sensitive":true}"#).unwrap();
        assert!(!format!("{:?}", put.value).contains("hunter2"));
    }
}
