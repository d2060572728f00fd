//! The configuration every function reads once at cold start, from environment
//! variables, into typed settings; a missing one is a start-up error naming it.

use std::net::IpAddr;
use std::sync::Arc;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use envplane_core::ports::OriginSecret;
use envplane_core::ports::{
    Artifacts, Clock, KeyRing, Launcher, NotificationSender, Notifier, Reports, SpendSource,
    SystemClock, Unwired, Vcs,
};
use envplane_core::region::{RegionName, Regions, SWITCH_CACHE};
use envplane_core::service::{Ports, Quotas, Settings};
use envplane_core::Platform;
use envplane_github::GitHubApi;
use envplane_webhooks::HttpSender;
use tracing_subscriber::filter::{ParseError, Targets};

use crate::cost_explorer::CostExplorerSpend;
use crate::dynamodb::DynamoDbStore;
use crate::ecs::{EcsLauncher, EcsSettings};
use crate::kms::KmsKeyRing;
use crate::launch_file::LaunchFiles;
use crate::lazy::LazyClient;
use crate::reaper::DeadLetters;
use crate::reports::SqsOutbound;
use crate::s3::S3Artifacts;
use crate::secrets::SecretsManagerOriginSecret;
use crate::sqs::{SqsQueue, StopThroughQueue};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing configuration: set {0}")]
    Missing(&'static str),
    #[error("invalid configuration {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where the platform's resources are.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// The single DynamoDB table.
    pub table_name: String,
    /// The SQS deployments queue.
    pub queue_url: String,
    /// The customer-managed KMS key for data keys and SSE-KMS.
    pub kms_key_id: String,
    /// The versioned S3 bucket for states and plans.
    pub artifacts_bucket: String,
    /// The S3 bucket of the sandboxes' launch files ([`crate::launch_file`]).
    pub launch_bucket: String,
    /// Address the bucket in the path rather than the host name, for S3-compatible
    /// endpoints without per-bucket host names (the emulator).
    pub s3_path_style: bool,
    /// The public API URL sandboxes call back.
    pub api_url: String,
    pub ecs_cluster: String,
    pub runner_task_definition: String,
    pub runner_container: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub max_parallel_deployments: usize,
    /// What one deployment may use (`ENVPLANE_QUOTA_*`; core's defaults where unset).
    pub quotas: Quotas,
    /// The SQS queue of pull request reports (`ENVPLANE_REPORTS_QUEUE_URL`); unset, no
    /// report is asked for (an installation without GitHub).
    pub reports_queue_url: Option<String>,
    /// GitHub's API (`ENVPLANE_GITHUB_API_URL`; `https://api.github.com` when unset).
    pub github_api_url: String,
    /// Notification targets may be plain HTTP and on private addresses
    /// (`ENVPLANE_NOTIFICATIONS_ALLOW_PRIVATE`: `true`; false when unset).
    pub allow_private_notification_targets: bool,
    /// This region and the one active before any failover (`ENVPLANE_REGION`,
    /// `ENVPLANE_HOME_REGION`, both or neither): the switch in the table says which
    /// acts. Neither: an installation in one region, which always acts.
    pub regions: Option<Regions>,
    /// The sandboxes' egress addresses, published at `/v1/meta/egress-ips`
    /// (`ENVPLANE_EGRESS_IPS`, comma-separated; unset: none published).
    pub egress_ips: Vec<IpAddr>,
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    optional(name).ok_or(ConfigError::Missing(name))
}

/// A variable's trimmed value; unset and blank are both `None`.
fn optional(name: &'static str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

fn list(name: &'static str) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = required(name)?
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect();
    if items.is_empty() {
        return Err(ConfigError::Missing(name));
    }
    Ok(items)
}

/// An optional number; unset is `default`.
fn number<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
    parse_number(name, optional(name), default)
}

fn parse_number<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("{value:?} is not a whole number"),
        }),
    }
}

/// The quotas of `ENVPLANE_QUOTA_*` as `lookup` finds them, each defaulting to core's;
/// none may be 0.
fn quotas(lookup: impl Fn(&'static str) -> Option<String>) -> Result<Quotas, ConfigError> {
    let defaults = Quotas::default();
    let positive = |name: &'static str, value: u64| {
        if value == 0 {
            Err(ConfigError::Invalid {
                name,
                reason: "a quota of 0 would refuse every deployment".into(),
            })
        } else {
            Ok(value)
        }
    };
    let quota = |name: &'static str, default: u64| {
        positive(name, parse_number(name, lookup(name), default)?)
    };
    let size = |name: &'static str, default: usize| {
        quota(name, default as u64).and_then(|value| {
            usize::try_from(value).map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("{value} is too large"),
            })
        })
    };
    Ok(Quotas {
        log_bytes: quota("ENVPLANE_QUOTA_LOG_BYTES", defaults.log_bytes)?,
        steps: size("ENVPLANE_QUOTA_STEPS", defaults.steps)?,
        state_bytes: size("ENVPLANE_QUOTA_STATE_BYTES", defaults.state_bytes)?,
        plan_bytes: size("ENVPLANE_QUOTA_PLAN_BYTES", defaults.plan_bytes)?,
    })
}

/// `ENVPLANE_REGION` and `ENVPLANE_HOME_REGION` as `lookup` finds them: both or neither.
fn regions(
    lookup: impl Fn(&'static str) -> Option<String>,
) -> Result<Option<Regions>, ConfigError> {
    let region = |name: &'static str| {
        lookup(name)
            .map(|value| {
                RegionName::parse(&value).map_err(|error| ConfigError::Invalid {
                    name,
                    reason: error.to_string(),
                })
            })
            .transpose()
    };
    match (region("ENVPLANE_REGION")?, region("ENVPLANE_HOME_REGION")?) {
        (Some(this), Some(home)) => Ok(Some(Regions {
            this,
            home,
            cache_for: SWITCH_CACHE,
        })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::Missing("ENVPLANE_REGION")),
        (Some(_), None) => Err(ConfigError::Missing("ENVPLANE_HOME_REGION")),
    }
}

/// `ENVPLANE_EGRESS_IPS`: comma-separated addresses.
fn egress_ips(value: Option<String>) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse().map_err(|_| ConfigError::Invalid {
                name: "ENVPLANE_EGRESS_IPS",
                reason: format!("{item:?} is not an IP address"),
            })
        })
        .collect()
}

/// An optional `true`/`false` variable; unset is false.
fn flag(name: &'static str) -> Result<bool, ConfigError> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(_) | Ok("") | Ok("false") => Ok(false),
        Ok("true") => Ok(true),
        Ok(value) => Err(ConfigError::Invalid {
            name,
            reason: format!("{value:?} is neither true nor false"),
        }),
    }
}

impl AwsSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let max_parallel_deployments = number("ENVPLANE_MAX_PARALLEL_DEPLOYMENTS", 50)?;
        let api_url = required("ENVPLANE_API_URL")?;
        if !api_url.starts_with("https://") && !api_url.starts_with("http://127.0.0.1") {
            return Err(ConfigError::Invalid {
                name: "ENVPLANE_API_URL",
                reason: "sandboxes call back over HTTPS only".into(),
            });
        }
        Ok(Self {
            table_name: required("ENVPLANE_TABLE_NAME")?,
            queue_url: required("ENVPLANE_QUEUE_URL")?,
            kms_key_id: required("ENVPLANE_KMS_KEY_ID")?,
            artifacts_bucket: required("ENVPLANE_ARTIFACTS_BUCKET")?,
            launch_bucket: required("ENVPLANE_LAUNCH_BUCKET")?,
            s3_path_style: flag("ENVPLANE_S3_PATH_STYLE")?,
            api_url,
            ecs_cluster: required("ENVPLANE_ECS_CLUSTER")?,
            runner_task_definition: required("ENVPLANE_RUNNER_TASK_DEFINITION")?,
            runner_container: std::env::var("ENVPLANE_RUNNER_CONTAINER")
                .unwrap_or_else(|_| "runner".into()),
            subnets: list("ENVPLANE_SUBNETS")?,
            security_groups: list("ENVPLANE_SECURITY_GROUPS")?,
            max_parallel_deployments,
            quotas: quotas(optional)?,
            reports_queue_url: optional("ENVPLANE_REPORTS_QUEUE_URL"),
            github_api_url: optional("ENVPLANE_GITHUB_API_URL")
                .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.into()),
            allow_private_notification_targets: flag("ENVPLANE_NOTIFICATIONS_ALLOW_PRIVATE")?,
            regions: regions(optional)?,
            egress_ips: egress_ips(optional("ENVPLANE_EGRESS_IPS"))?,
        })
    }
}

const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// An S3 client; `path_style` for endpoints without per-bucket host names.
pub fn s3_client(sdk: &SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build(),
    )
}

/// The platform on the AWS adapters, and the queue (the deployer requeues through it).
pub struct AwsPlatform {
    pub platform: Arc<Platform>,
    pub queue: Arc<SqsQueue>,
    /// For the clients a function needs besides the platform's.
    pub sdk: SdkConfig,
}

/// How a function assembles its platform: which adapters it links. The SDK clients
/// themselves are built on first use.
pub type Wiring = fn(&AwsSettings, &SdkConfig) -> AwsPlatform;

/// The api's adapters (also webhook's and reporter's): the store, KMS, S3, the queue
/// and GitHub's API (a sandbox's job carries an installation token to clone with). It starts no sandbox, and
/// stops a cancelled deployment's by asking the deployer through the queue
/// ([`StopThroughQueue`]): the internet-facing function holds no ECS permission.
pub fn platform(settings: &AwsSettings, sdk: &SdkConfig) -> AwsPlatform {
    let common = Common::new(settings, sdk);
    let key_ring = KmsKeyRing::new(
        LazyClient::new(sdk, aws_sdk_kms::Client::new),
        common.dynamodb.clone(),
        &settings.table_name,
        &settings.kms_key_id,
    );
    let artifacts = S3Artifacts::new(
        lazy_s3_client(settings, sdk),
        &settings.artifacts_bucket,
        &settings.kms_key_id,
    );
    let launcher = StopThroughQueue::new(common.queue.clone());
    common.assemble(
        settings,
        Arc::new(key_ring),
        Arc::new(artifacts),
        Arc::new(launcher),
        Arc::new(SystemClock),
        Outside {
            vcs: Arc::new(GitHubApi::new(&settings.github_api_url)),
            sender: Arc::new(HttpSender::new(settings.allow_private_notification_targets)),
            spend: Arc::new(Unwired),
        },
    )
}

/// An S3 client built on first use, path-style when the settings say so.
fn lazy_s3_client(settings: &AwsSettings, sdk: &SdkConfig) -> LazyClient<aws_sdk_s3::Client> {
    if settings.s3_path_style {
        LazyClient::new(sdk, |sdk| s3_client(sdk, true))
    } else {
        LazyClient::new(sdk, |sdk| s3_client(sdk, false))
    }
}

/// The deployer's adapters: the store, the queue and the sandbox launcher on ECS, which
/// writes each sandbox's launch file to S3. Dispatching never seals a value nor touches
/// an artifact, so KMS stays out of its binary.
pub fn dispatching_platform(settings: &AwsSettings, sdk: &SdkConfig) -> AwsPlatform {
    let region = sdk
        .region()
        .map(|region| region.as_ref())
        .unwrap_or_default();
    let launch_files = LaunchFiles::new(
        lazy_s3_client(settings, sdk),
        &settings.launch_bucket,
        region,
    );
    let launcher = EcsLauncher::new(
        LazyClient::new(sdk, aws_sdk_ecs::Client::new),
        EcsSettings {
            cluster: settings.ecs_cluster.clone(),
            task_definition: settings.runner_task_definition.clone(),
            container: settings.runner_container.clone(),
            subnets: settings.subnets.clone(),
            security_groups: settings.security_groups.clone(),
            api_url: settings.api_url.clone(),
        },
        launch_files,
    );
    let unwired = Arc::new(Unwired);
    let clock = Arc::new(SystemClock);
    Common::new(settings, sdk).assemble(
        settings,
        unwired.clone(),
        unwired.clone(),
        Arc::new(launcher),
        clock,
        Outside::none(),
    )
}

/// The adapters of task-events and the reaper: concluding a deployment and queueing the
/// environment's next one needs only the store and the queue; a sandbox that must stop
/// (a timed-out deployment's) is stopped by the deployer, asked through the queue.
pub fn concluding_platform(settings: &AwsSettings, sdk: &SdkConfig) -> AwsPlatform {
    concluding_platform_with_clock(settings, sdk, Arc::new(SystemClock))
}

/// [`concluding_platform`] on another clock: a watchdog's decisions depend on the time.
pub fn concluding_platform_with_clock(
    settings: &AwsSettings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> AwsPlatform {
    stopping_through_queue(settings, sdk, clock, Outside::none())
}

/// The reaper's adapters: those of [`concluding_platform`], and the bill (Cost
/// Explorer) for the daily spend job.
pub fn reaper_platform(settings: &AwsSettings, sdk: &SdkConfig) -> AwsPlatform {
    reaper_platform_with_clock(settings, sdk, Arc::new(SystemClock))
}

/// [`reaper_platform`] on another clock: which days the spend job reads depends on it.
pub fn reaper_platform_with_clock(
    settings: &AwsSettings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> AwsPlatform {
    let outside = Outside {
        spend: Arc::new(CostExplorerSpend::from_sdk(sdk)),
        ..Outside::none()
    };
    stopping_through_queue(settings, sdk, clock, outside)
}

/// Adapters that conclude deployments and ask the deployer, through the queue, to stop
/// a sandbox.
fn stopping_through_queue(
    settings: &AwsSettings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
    outside: Outside,
) -> AwsPlatform {
    let unwired = Arc::new(Unwired);
    let common = Common::new(settings, sdk);
    let launcher = Arc::new(StopThroughQueue::new(common.queue.clone()));
    common.assemble(
        settings,
        unwired.clone(),
        unwired.clone(),
        launcher,
        clock,
        outside,
    )
}

/// Who outside the platform a function calls: GitHub's API and notification targets.
/// Only the api, webhook and reporter functions do.
struct Outside {
    vcs: Arc<dyn Vcs>,
    sender: Arc<dyn NotificationSender>,
    /// The bill: only the reaper reads it.
    spend: Arc<dyn SpendSource>,
}

impl Outside {
    fn none() -> Self {
        Self {
            vcs: Arc::new(Unwired),
            sender: Arc::new(Unwired),
            spend: Arc::new(Unwired),
        }
    }
}

/// What every function has: the table's client (the store's, which the key ring
/// shares) and the deployments queue.
struct Common {
    sdk: SdkConfig,
    dynamodb: LazyClient<aws_sdk_dynamodb::Client>,
    sqs: LazyClient<aws_sdk_sqs::Client>,
    queue: Arc<SqsQueue>,
}

impl Common {
    fn new(settings: &AwsSettings, sdk: &SdkConfig) -> Self {
        let sqs = LazyClient::new(sdk, aws_sdk_sqs::Client::new);
        Self {
            sdk: sdk.clone(),
            dynamodb: LazyClient::new(sdk, aws_sdk_dynamodb::Client::new),
            queue: Arc::new(SqsQueue::new(sqs.clone(), &settings.queue_url)),
            sqs,
        }
    }

    fn assemble(
        self,
        settings: &AwsSettings,
        key_ring: Arc<dyn KeyRing>,
        artifacts: Arc<dyn Artifacts>,
        launcher: Arc<dyn Launcher>,
        clock: Arc<dyn Clock>,
        outside: Outside,
    ) -> AwsPlatform {
        let (reports, notifier): (Arc<dyn Reports>, Arc<dyn Notifier>) =
            match &settings.reports_queue_url {
                Some(queue_url) => {
                    let outbound = Arc::new(SqsOutbound::new(self.sqs.clone(), queue_url));
                    (outbound.clone(), outbound)
                }
                None => (Arc::new(Unwired), Arc::new(Unwired)),
            };
        let ports = Ports {
            store: Arc::new(DynamoDbStore::new(self.dynamodb, &settings.table_name)),
            key_ring,
            clock,
            queue: self.queue.clone(),
            launcher,
            artifacts,
            vcs: outside.vcs,
            reports,
            notifier,
            sender: outside.sender,
            spend: outside.spend,
        };
        let platform_settings = Settings {
            max_parallel_deployments: settings.max_parallel_deployments,
            // Many function instances share the table: each reads the key every time.
            cache_api_keys: false,
            local_repositories: None,
            // Only the deployer can launch; every start goes through the queue to it.
            start_next_inline: false,
            quotas: settings.quotas.clone(),
            public_url: settings.api_url.clone(),
            regions: settings.regions.clone(),
            egress_ips: settings.egress_ips.clone(),
            allow_private_notification_targets: settings.allow_private_notification_targets,
            notifications: true,
            // Plans of AWS resources price from the catalog as they are.
            pricing: Default::default(),
        };
        AwsPlatform {
            platform: Arc::new(Platform::new(ports, platform_settings)),
            queue: self.queue,
            sdk: self.sdk,
        }
    }
}

/// The platform configured from the environment, as a function builds it at cold start
/// with its `wiring`.
pub fn platform_from_env(wiring: Wiring) -> Result<AwsPlatform, ConfigError> {
    let settings = AwsSettings::from_env()?;
    let sdk = lambda_sdk_config()?;
    Ok(wiring(&settings, &sdk))
}

/// The SDK configuration of a function, built directly rather than by `aws_config`'s
/// loader: the region and the role's credentials from the variables Lambda sets
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), and
/// `AWS_ENDPOINT_URL` when set (an emulator, a VPC endpoint). The loader would link the
/// profile-file, SSO, web-identity (an STS client) and IMDS providers into every
/// function, which never uses them (see docs/benchmarks.md, cold start).
fn lambda_sdk_config() -> Result<SdkConfig, ConfigError> {
    Ok(sdk_config(
        required("AWS_REGION")?,
        endpoint_url()?,
        https_client(trusted_roots()?)?,
    ))
}

/// The SDK configuration of the operator's tool in `region`: as a function's, with
/// credentials from the environment (`AWS_ACCESS_KEY_ID`, ...; e.g. what `aws configure
/// export-credentials --format env` prints).
pub fn regional_sdk_config(region: &str) -> Result<SdkConfig, ConfigError> {
    Ok(sdk_config(
        region.to_string(),
        endpoint_url()?,
        https_client(trusted_roots()?)?,
    ))
}

/// `AWS_ENDPOINT_URL`, checked at start: the SDK would only fail each call on a bad one.
fn endpoint_url() -> Result<Option<String>, ConfigError> {
    let Some(endpoint_url) = optional("AWS_ENDPOINT_URL") else {
        return Ok(None);
    };
    let host = ["https://", "http://"]
        .iter()
        .find_map(|scheme| endpoint_url.strip_prefix(scheme));
    match host {
        Some(host) if !host.is_empty() => Ok(Some(endpoint_url)),
        _ => Err(ConfigError::Invalid {
            name: "AWS_ENDPOINT_URL",
            reason: "not an http:// or https:// URL".into(),
        }),
    }
}

fn sdk_config(region: String, endpoint_url: Option<String>, client: SharedHttpClient) -> SdkConfig {
    let credentials = EnvironmentVariableCredentialsProvider::new();
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(client);
    match endpoint_url {
        Some(endpoint_url) => sdk.endpoint_url(endpoint_url),
        None => sdk,
    }
    .build()
}

/// The roots the AWS API endpoints' certificates chain to (Amazon Trust Services, and
/// Starfield Services G2 which cross-signs them).
const AMAZON_ROOTS: &[u8] = include_bytes!("amazon-roots.pem");

/// What the functions' TLS trusts: the Amazon roots, or the PEM bundle `SSL_CERT_FILE`
/// names (an endpoint behind another CA, a TLS-inspecting egress proxy). Not the whole
/// system store, which the SDK would read and parse at every cold start (half of a
/// function's init on Debian, see docs/benchmarks.md) to trust ~140 roots where AWS
/// needs five.
fn trusted_roots() -> Result<Vec<u8>, ConfigError> {
    let Some(path) = std::env::var_os("SSL_CERT_FILE") else {
        return Ok(AMAZON_ROOTS.to_vec());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: "SSL_CERT_FILE",
        reason,
    };
    let pem = std::fs::read(&path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.to_string_lossy())))?;
    check_roots(&pem).map_err(invalid)?;
    Ok(pem)
}

/// Every certificate of `pem` must be a usable root (the SDK's TLS setup panics on one
/// that is not), and there must be at least one.
fn check_roots(pem: &[u8]) -> Result<usize, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("not a PEM bundle: {error}"))?;
    let (valid, invalid) = rustls::RootCertStore::empty().add_parsable_certificates(certificates);
    match (valid, invalid) {
        (_, 1..) => Err(format!("{invalid} of its certificates cannot be parsed")),
        (0, 0) => Err("no certificate in it".into()),
        (valid, 0) => Ok(valid),
    }
}

/// The HTTPS client every SDK client of a function shares: rustls on ring, trusting
/// only the roots in `pem`.
fn https_client(pem: Vec<u8>) -> Result<SharedHttpClient, ConfigError> {
    let trust_store = TrustStore::empty().with_pem_certificate(pem);
    let context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .map_err(|error| ConfigError::Invalid {
            name: "SSL_CERT_FILE",
            reason: error.to_string(),
        })?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https())
}

/// JSON logs for CloudWatch, filtered by `RUST_LOG`.
pub fn init_lambda_tracing() -> Result<(), ConfigError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    tracing_subscriber::fmt()
        .json()
        .without_time()
        .finish()
        .with(log_filter()?)
        .init();
    Ok(())
}

/// `RUST_LOG` (default `info`): a level and `target=level` pairs, as in
/// `info,envplane_aws=debug`. Not `EnvFilter`'s span and field filters: its regex engine
/// would add ~0.36 MB to every function (docs/aws.md).
fn log_filter() -> Result<Targets, ConfigError> {
    match optional("RUST_LOG") {
        Some(directives) => directives
            .parse()
            .map_err(|error: ParseError| ConfigError::Invalid {
                name: "RUST_LOG",
                reason: error.to_string(),
            }),
        None => Ok(Targets::new().with_default(tracing::Level::INFO)),
    }
}

/// The origin check of the api and the webhook: `ENVPLANE_ORIGIN_SECRET_ARN` names the
/// Secrets Manager secret whose value CloudFront sends in `x-envplane-origin`, and every
/// request but `/health` must carry its current or previous value
/// (the http crate's `api_router_behind`), so the API Gateway's own execute-api URL does
/// not go around the WAF.
///
/// Optional: unset (or blank), there is no check, for an installation without CloudFront
/// in front of its API, where the execute-api URL is the public entry (logged at start).
pub fn origin_secret_from_env(sdk: &SdkConfig) -> Option<Arc<dyn OriginSecret>> {
    let origin = origin_secret(optional(ORIGIN_SECRET_ARN), sdk);
    if origin.is_none() {
        tracing::info!(
            "{ORIGIN_SECRET_ARN} is not set: requests are served without the origin check"
        );
    }
    origin
}

const ORIGIN_SECRET_ARN: &str = "ENVPLANE_ORIGIN_SECRET_ARN";

fn origin_secret(arn: Option<String>, sdk: &SdkConfig) -> Option<Arc<dyn OriginSecret>> {
    arn.map(|arn| {
        let client = LazyClient::new(sdk, aws_sdk_secretsmanager::Client::new);
        Arc::new(SecretsManagerOriginSecret::new(client, arn)) as Arc<dyn OriginSecret>
    })
}

/// The reaper's dead-letter queue: `ENVPLANE_DEAD_LETTER_QUEUE_URL`.
pub fn dead_letters_from_env(sdk: &SdkConfig) -> Result<DeadLetters, ConfigError> {
    Ok(DeadLetters::new(
        LazyClient::new(sdk, aws_sdk_sqs::Client::new),
        required("ENVPLANE_DEAD_LETTER_QUEUE_URL")?,
    ))
}

/// The deployer's view of the queue's redrive policy: `ENVPLANE_REDRIVE_LIMIT` must
/// equal its `maxReceiveCount` (default 5).
pub fn redrive_limit_from_env() -> Result<u32, ConfigError> {
    match std::env::var("ENVPLANE_REDRIVE_LIMIT") {
        Err(_) => Ok(crate::deployer::DEFAULT_REDRIVE_LIMIT),
        Ok(value) => value
            .parse()
            .ok()
            .filter(|limit| *limit >= 1)
            .ok_or(ConfigError::Invalid {
                name: "ENVPLANE_REDRIVE_LIMIT",
                reason: format!("{value:?} is not a whole number of at least 1"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_read_with_core_defaults_for_the_unset() {
        let set = |name: &str| match name {
            "ENVPLANE_QUOTA_STATE_BYTES" => Some("1048576".to_string()),
            "ENVPLANE_QUOTA_STEPS" => Some("20".to_string()),
            _ => None,
        };
        let quotas = quotas(set).unwrap();
        let defaults = Quotas::default();
        assert_eq!(quotas.state_bytes, 1_048_576);
        assert_eq!(quotas.steps, 20);
        assert_eq!(quotas.log_bytes, defaults.log_bytes);
        assert_eq!(quotas.plan_bytes, defaults.plan_bytes);
        for bad in ["0", "-5", "64MiB"] {
            let error = super::quotas(|name: &str| {
                (name == "ENVPLANE_QUOTA_PLAN_BYTES").then(|| bad.to_string())
            })
            .unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("invalid configuration ENVPLANE_QUOTA_PLAN_BYTES"),
                "{bad}: {error}"
            );
        }
    }

    /// Every `ENVPLANE_*` name in `text`: a name is upper-case letters, digits and `_`.
    fn variable_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("ENVPLANE_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
        names
    }

    /// What infra/ gives the functions and what their configuration (this file) reads
    /// are the same names: a variable read but never set is a function that cannot
    /// start or a setting that silently stays at its default; one set but never read
    /// is a setting that does nothing.
    #[test]
    fn infra_sets_exactly_the_variables_the_functions_read() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let read = |path: &str| std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        // Only the string literals of the code, not names in its comments.
        let code = read("shared/aws/src/config.rs");
        let code = code.split("#[cfg(test)]").next().unwrap();
        let literals: String = code
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        let functions_read = variable_names(&literals);
        // Read, and left unset by infra/ on purpose.
        let unset_on_purpose = [
            // Path-style S3 addressing is for emulators.
            "ENVPLANE_S3_PATH_STYLE",
            // Plain-HTTP, private notification targets: an operator's opt-in.
            "ENVPLANE_NOTIFICATIONS_ALLOW_PRIVATE",
        ];
        let infra = read("infra/modules/region/functions.tf");
        let environment = infra
            .split("common_environment = {")
            .nth(1)
            .and_then(|rest| rest.split("resource \"").next())
            .expect("infra/modules/region/functions.tf sets the functions' environment in locals");
        let infra_sets = variable_names(environment);
        let missing: Vec<_> = functions_read
            .iter()
            .filter(|name| {
                !infra_sets.contains(*name) && !unset_on_purpose.contains(&name.as_str())
            })
            .collect();
        let unread: Vec<_> = infra_sets.difference(&functions_read).collect();
        assert!(
            missing.is_empty(),
            "the functions read {missing:?}, which infra/ never sets"
        );
        assert!(
            unread.is_empty(),
            "infra/ sets {unread:?}, which no function reads"
        );
        assert!(functions_read.contains("ENVPLANE_REGION") && infra_sets.len() > 20);
    }

    #[test]
    fn regions_come_both_or_neither() {
        let lookup = |this: Option<&'static str>, home: Option<&'static str>| {
            move |name: &'static str| match name {
                "ENVPLANE_REGION" => this.map(str::to_string),
                "ENVPLANE_HOME_REGION" => home.map(str::to_string),
                _ => None,
            }
        };
        assert_eq!(regions(lookup(None, None)).unwrap(), None);
        let both = regions(lookup(Some("eu-central-1"), Some("eu-west-1")))
            .unwrap()
            .unwrap();
        assert_eq!(both.this.as_str(), "eu-central-1");
        assert_eq!(both.home.as_str(), "eu-west-1");
        for (this, home, named) in [
            (Some("eu-west-1"), None, "ENVPLANE_HOME_REGION"),
            (None, Some("eu-west-1"), "ENVPLANE_REGION"),
            (Some("EU WEST"), Some("eu-west-1"), "ENVPLANE_REGION"),
        ] {
            let error = regions(lookup(this, home)).unwrap_err().to_string();
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn egress_addresses_are_addresses() {
        assert_eq!(egress_ips(None).unwrap(), Vec::<IpAddr>::new());
        let parsed = egress_ips(Some("203.0.113.7, 2001:db8::1,".into())).unwrap();
        assert_eq!(parsed.len(), 2);
        let error = egress_ips(Some("203.0.113.7,nat-gateway".into())).unwrap_err();
        assert!(error.to_string().contains("\"nat-gateway\""), "{error}");
    }

    /// What a function builds at start (credentials from the environment, the endpoint
    /// from `AWS_ENDPOINT_URL`, the pinned roots' client) signs and sends real calls.
    #[tokio::test]
    async fn a_functions_sdk_configuration_reaches_the_endpoint() {
        let client = https_client(AMAZON_ROOTS.to_vec()).unwrap();
        let sdk = sdk_config(
            "us-east-1".into(),
            Some(crate::emulator::endpoint()),
            client,
        );
        let tables = aws_sdk_dynamodb::Client::new(&sdk)
            .list_tables()
            .send()
            .await;
        assert!(tables.is_ok(), "{tables:?}");
    }

    #[tokio::test]
    async fn the_origin_check_is_on_only_with_a_secret() {
        let sdk = sdk_config(
            "us-east-1".into(),
            Some(crate::emulator::endpoint()),
            https_client(AMAZON_ROOTS.to_vec()).unwrap(),
        );
        assert!(origin_secret(None, &sdk).is_none());
        let name = crate::emulator::unique_name("envplane/origin-config");
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&name)
            .secret_string("from-cloudfront")
            .send()
            .await
            .unwrap();
        let origin = origin_secret(Some(name), &sdk).unwrap();
        assert!(origin.accepts(b"from-cloudfront").await);
        assert!(!origin.accepts(b"from-elsewhere").await);
    }

    #[test]
    fn the_amazon_roots_are_five_usable_roots() {
        assert_eq!(check_roots(AMAZON_ROOTS), Ok(5));
        https_client(AMAZON_ROOTS.to_vec()).unwrap();
    }

    #[test]
    fn a_bundle_without_usable_roots_is_refused() {
        assert!(check_roots(b"").unwrap_err().contains("no certificate"));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(check_roots(broken)
            .unwrap_err()
            .contains("cannot be parsed"));
    }
}
