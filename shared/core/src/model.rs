//! The objects users manage, as the API shows them, and the inputs that create them.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::auth::Role;

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
    /// How long the environment lives after a deployment, e.g. `8h` (`None`: forever).
    pub ttl: Option<String>,
    /// How long one phase of a deployment may run before it is stopped and fails with
    /// "timed out after …" (1 to 1440; 120 by default).
    #[serde(default = "default_deployment_timeout")]
    pub deployment_timeout_minutes: u32,
    /// Drift detection settings; not configurable yet, always `null`.
    #[schema(value_type = Option<Object>)]
    pub drift: Option<serde_json::Value>,
    /// The outputs of the last successful apply (sensitive ones `null`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub role: Role,
    /// Limit the key to one project.
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    pub name: String,
    pub project_id: String,
    pub repository: String,
    /// Branch, tag or commit; defaults to `main`.
    #[serde(default)]
    pub revision: Option<String>,
    /// Directory inside the repository; defaults to its root.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub iac_type: Option<IacType>,
    pub iac_version: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    pub name: Option<String>,
    pub repository: Option<String>,
    pub revision: Option<String>,
    pub path: Option<String>,
    pub iac_type: Option<IacType>,
    pub iac_version: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub name: String,
    pub project_id: String,
    pub template_id: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub requires_approval: bool,
    /// Setting it needs the admin role.
    #[serde(default)]
    pub allow_self_approval: bool,
    #[serde(default)]
    pub ttl: Option<String>,
    /// 1 to 1440 minutes; 120 when left out.
    #[serde(default)]
    pub deployment_timeout_minutes: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub drift: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub name: Option<String>,
    /// `null` clears the override and follows the template's revision again.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub revision: Option<Option<String>>,
    /// Changing it needs the admin role.
    pub requires_approval: Option<bool>,
    /// Changing it needs the admin role.
    pub allow_self_approval: Option<bool>,
    /// `null` removes the time to live.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub ttl: Option<Option<String>>,
    /// 1 to 1440 minutes.
    pub deployment_timeout_minutes: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub drift: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutVariable {
    #[schema(value_type = String)]
    pub value: SecretString,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub kind: VariableKind,
}

/// Tells a field that is absent (`None`) from one set to `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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
