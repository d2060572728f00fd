//! Notifications: what happened, where it is sent (a generic HTTPS webhook signed like
//! GitHub's, or a Slack incoming webhook) and the address rules that keep a target from
//! pointing the platform at its own network.

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deployment::Action;
use crate::{Error, Result};

/// The longest target URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// How a target wants its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A JSON body signed with the target's secret in `X-Envplane-Signature-256`
    /// (`sha256=` and the hex HMAC-SHA256 of the body), as GitHub signs its webhooks.
    Webhook,
    /// Slack's incoming-webhook format: `{"text": "..."}`.
    Slack,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
        }
    }
}

/// What a target can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum NotificationEvent {
    #[serde(rename = "deployment.succeeded")]
    DeploymentSucceeded,
    #[serde(rename = "deployment.failed")]
    DeploymentFailed,
    #[serde(rename = "deployment.waiting_for_approval")]
    DeploymentWaitingForApproval,
    /// An environment's time to live ended: its destroy was queued.
    #[serde(rename = "environment.expired")]
    EnvironmentExpired,
    /// A drift check found changes.
    #[serde(rename = "drift.detected")]
    DriftDetected,
    /// A drifted environment is in sync again (a check found no change, or an apply
    /// ended the drift).
    #[serde(rename = "drift.resolved")]
    DriftResolved,
    /// A drift check failed.
    #[serde(rename = "drift.check_failed")]
    DriftCheckFailed,
    /// An environment's spend this month reached 80% or 100% of its monthly budget.
    #[serde(rename = "budget.threshold")]
    BudgetThreshold,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentSucceeded => "deployment.succeeded",
            Self::DeploymentFailed => "deployment.failed",
            Self::DeploymentWaitingForApproval => "deployment.waiting_for_approval",
            Self::EnvironmentExpired => "environment.expired",
            Self::DriftDetected => "drift.detected",
            Self::DriftResolved => "drift.resolved",
            Self::DriftCheckFailed => "drift.check_failed",
            Self::BudgetThreshold => "budget.threshold",
        }
    }
}

/// One thing that happened, as every target is told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: NotificationEvent,
    pub organization_id: String,
    pub project_id: String,
    pub environment_id: String,
    pub environment_name: String,
    /// The deployment it is about; `null` for a budget threshold.
    pub deployment_id: Option<String>,
    pub action: Option<Action>,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// The deployment (or, for a budget, the environment's costs) in the API.
    pub url: String,
    pub at: DateTime<Utc>,
    /// What reached which share of the budget, for `budget.threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetNotice>,
}

/// A budget threshold reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetNotice {
    /// `2026-12`.
    pub month: String,
    /// 80 or 100 (percent).
    pub threshold: u8,
    pub monthly_budget: f64,
    /// The month's spend so far, rounded to cents.
    pub spent: f64,
    pub currency: String,
}

impl Notification {
    /// The body a target of `kind` receives.
    pub fn body(&self, kind: TargetKind) -> Vec<u8> {
        let value = match kind {
            TargetKind::Webhook => serde_json::to_value(self).expect("a notification serializes"),
            TargetKind::Slack => serde_json::json!({ "text": self.text() }),
        };
        serde_json::to_vec(&value).expect("JSON serializes")
    }

    /// The same for every delivery of this notification, its retries and repeats
    /// included, so a target can act on it once.
    pub fn delivery_id(&self) -> String {
        match (&self.deployment_id, &self.budget) {
            (Some(deployment_id), _) => format!("{deployment_id}.{}", self.event.as_str()),
            (None, Some(budget)) => format!(
                "{}.{}.{}.{}",
                self.environment_id,
                budget.month,
                budget.threshold,
                self.event.as_str()
            ),
            (None, None) => format!("{}.{}", self.environment_id, self.event.as_str()),
        }
    }

    /// One line for a person.
    fn text(&self) -> String {
        let action = self.action.map_or("deployment", Action::as_str);
        let what = match self.event {
            NotificationEvent::DeploymentSucceeded => format!("{action} succeeded"),
            NotificationEvent::DeploymentFailed => format!("{action} failed"),
            NotificationEvent::DeploymentWaitingForApproval => {
                format!("{action} is waiting for approval")
            }
            NotificationEvent::EnvironmentExpired => {
                "time to live ended: destroy queued".to_string()
            }
            NotificationEvent::DriftDetected => "drifted from its code".to_string(),
            NotificationEvent::DriftResolved => "is in sync with its code again".to_string(),
            NotificationEvent::DriftCheckFailed => "drift check failed".to_string(),
            NotificationEvent::BudgetThreshold => match &self.budget {
                Some(b) => format!(
                    "spent {} {:.2} of its {:.2} budget for {} ({}%)",
                    b.currency, b.spent, b.monthly_budget, b.month, b.threshold
                ),
                None => "reached a budget threshold".to_string(),
            },
        };
        let reason = self
            .reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        format!(
            "envplane: {} {what}{reason} ({})",
            self.environment_name, self.url
        )
    }
}

/// A target's URL, checked: HTTPS (plain HTTP only where the operator allows private
/// targets), no credentials in it, and no address of a private, shared, loopback,
/// link-local or otherwise non-public range written as its host. Names are checked
/// again when they are resolved, at each delivery. Its path may be a credential (a
/// Slack URL's is): `Debug` shows the origin only.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetUrl(url::Url);

impl std::fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetUrl({}/…)", self.origin())
    }
}

impl TargetUrl {
    pub fn parse(text: &str, allow_private: bool) -> Result<Self> {
        let refuse = |why: &str| Err(Error::invalid(format!("url {why}")));
        if text.len() > MAX_URL_LEN {
            return refuse(&format!("has more than {MAX_URL_LEN} characters"));
        }
        let Ok(url) = url::Url::parse(text) else {
            return refuse("is not an absolute URL");
        };
        match url.scheme() {
            "https" => {}
            "http" if allow_private => {}
            _ => return refuse("must be https"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("may not carry credentials before the host");
        }
        let public = match url.host() {
            None => return refuse("has no host"),
            Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                name.contains('.') && name != "localhost" && !name.ends_with(".localhost")
            }
        };
        if !public && !allow_private {
            return refuse("must name a public host, not a private, loopback or link-local one");
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host and port: what the API shows of a URL whose path may be a secret
    /// (Slack's is).
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

/// Whether `ip` is an address of the public internet: not private, shared, loopback,
/// link-local, documentation, benchmarking, multicast, reserved or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let [first, second, ..] = ip.segments();
            let nat64 = first == 0x64 && second == 0xff9b;
            if nat64 {
                let [.., high, low] = ip.segments();
                let embedded = Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
                return is_public_v4(embedded);
            }
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && second == 0x0db8))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_targets_are_taken() {
        for url in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "https://example.com:8443/hook",
            "https://93.184.216.34/hook",
            "https://[2606:4700::1111]/hook",
        ] {
            assert!(TargetUrl::parse(url, false).is_ok(), "{url}");
        }
        for (url, says) in [
            ("http://example.com/hook", "https"),
            ("ftp://example.com/hook", "https"),
            ("https://user:pw@example.com/hook", "credentials"),
            ("https://127.0.0.1/hook", "public host"),
            ("https://10.1.2.3/hook", "public host"),
            ("https://169.254.169.254/latest/meta-data", "public host"),
            ("https://100.64.0.1/", "public host"),
            ("https://[::1]/", "public host"),
            ("https://[fd00::1]/", "public host"),
            ("https://[fe80::1]/", "public host"),
            ("https://[::ffff:10.0.0.1]/", "public host"),
            ("https://[64:ff9b::a9fe:a9fe]/", "public host"),
            ("https://localhost/hook", "public host"),
            ("https://metadata/computeMetadata", "public host"),
            ("https://0x7f.1/", "public host"),
            ("https://2130706433/", "public host"),
            ("not a url", "absolute URL"),
        ] {
            let error = TargetUrl::parse(url, false).unwrap_err().to_string();
            assert!(error.contains(says), "{url}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(TargetUrl::parse(&long, false).is_err());
    }

    #[test]
    fn a_url_shows_its_origin_only() {
        let url = TargetUrl::parse("https://hooks.slack.com/services/T0/B0/SECRET", false).unwrap();
        let shown = format!("{url:?}");
        assert!(
            shown.contains("https://hooks.slack.com") && !shown.contains("SECRET"),
            "{shown}"
        );
    }

    #[test]
    fn the_operator_may_allow_private_targets() {
        let url = TargetUrl::parse("http://127.0.0.1:9000/hook", true).unwrap();
        assert_eq!(url.origin(), "http://127.0.0.1:9000");
        assert_eq!((url.host(), url.port()), ("127.0.0.1", 9000));
    }

    #[test]
    fn slack_gets_a_line_and_webhooks_the_whole_notification() {
        let notification = Notification {
            event: NotificationEvent::DeploymentFailed,
            organization_id: "org_1".into(),
            project_id: "prj_1".into(),
            environment_id: "env_1".into(),
            environment_name: "staging".into(),
            deployment_id: Some("dep_1".into()),
            action: Some(Action::Apply),
            reason: Some("timed out after 2h".into()),
            url: "https://envplane.example.com/v1/deployments/dep_1".into(),
            at: Utc::now(),
            budget: None,
        };
        let slack: serde_json::Value =
            serde_json::from_slice(&notification.body(TargetKind::Slack)).unwrap();
        assert_eq!(
            slack["text"],
            "envplane: staging apply failed: timed out after 2h (https://envplane.example.com/v1/deployments/dep_1)"
        );
        let webhook: serde_json::Value =
            serde_json::from_slice(&notification.body(TargetKind::Webhook)).unwrap();
        assert_eq!(webhook["event"], "deployment.failed");
        assert_eq!(webhook["deployment_id"], "dep_1");
        assert!(webhook.get("budget").is_none());
        assert_eq!(notification.delivery_id(), "dep_1.deployment.failed");
    }

    #[test]
    fn a_budget_threshold_names_the_spend_and_is_delivered_once_per_month_and_threshold() {
        let notification = Notification {
            event: NotificationEvent::BudgetThreshold,
            organization_id: "org_1".into(),
            project_id: "prj_1".into(),
            environment_id: "env_1".into(),
            environment_name: "staging".into(),
            deployment_id: None,
            action: None,
            reason: None,
            url: "https://envplane.example.com/v1/environments/env_1/costs".into(),
            at: Utc::now(),
            budget: Some(BudgetNotice {
                month: "2026-12".into(),
                threshold: 80,
                monthly_budget: 100.0,
                spent: 84.5,
                currency: "USD".into(),
            }),
        };
        let slack: serde_json::Value =
            serde_json::from_slice(&notification.body(TargetKind::Slack)).unwrap();
        assert_eq!(
            slack["text"],
            "envplane: staging spent USD 84.50 of its 100.00 budget for 2026-12 (80%) (https://envplane.example.com/v1/environments/env_1/costs)"
        );
        assert_eq!(
            notification.delivery_id(),
            "env_1.2026-12.80.budget.threshold"
        );
    }
}
