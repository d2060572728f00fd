//! `envplane serve`: the whole platform in one process on an embedded store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use envplane_core::cost::{self, PricingRules};
use envplane_core::secrecy::{ExposeSecret, SecretString};
use envplane_core::service::Quotas;
use envplane_local::{Isolation, LocalConfig, ADMIN_KEY_FILE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the database, the master key and the admin key live (default:
    /// $XDG_DATA_HOME/envplane, or ~/.local/share/envplane).
    #[arg(long, env = "ENVPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ENVPLANE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL sandboxes call back (default: http:// and the listening address).
    #[arg(long, env = "ENVPLANE_API_URL")]
    api_url: Option<String>,
    /// The envplane-runner binary (default: beside this executable).
    #[arg(long, env = "ENVPLANE_RUNNER")]
    runner: Option<PathBuf>,
    /// Where IaC binaries are found: <dir>/terraform/<version>/terraform
    /// (default: <data-dir>/tools).
    #[arg(long, env = "ENVPLANE_TOOLS_DIR")]
    tools_dir: Option<PathBuf>,
    /// Deployments that may run at once, across environments.
    #[arg(long, env = "ENVPLANE_MAX_PARALLEL_DEPLOYMENTS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    max_parallel_deployments: u16,
    /// Share the Git repositories under DIR with sandboxes: templates may then name
    /// `file://` repositories inside it, mounted read-only. Off by default; DIR may not
    /// overlap the data directory.
    #[arg(long = "local-repos", env = "ENVPLANE_LOCAL_REPOS", value_name = "DIR")]
    local_repositories: Option<PathBuf>,
    /// An address range (CIDR) sandboxes may not reach, beyond the private, shared and
    /// link-local ranges they never reach; repeat for more.
    #[arg(long = "sandbox-deny", value_name = "CIDR", value_parser = parse_range)]
    blocked_ranges: Vec<String>,
    /// Let notification targets be plain HTTP and on private, loopback or link-local
    /// addresses (targets on your own network); off by default.
    #[arg(long, env = "ENVPLANE_NOTIFICATIONS_ALLOW_PRIVATE")]
    allow_private_notification_targets: bool,
    /// Send no notifications (an installation that may reach nothing outside): adding a
    /// notification target is refused.
    #[arg(
        long,
        env = "ENVPLANE_NO_NOTIFICATIONS",
        conflicts_with = "allow_private_notification_targets"
    )]
    no_notifications: bool,
    /// Price a resource type as a catalog type, e.g. `mycloud_vm=aws_instance` (its
    /// attributes named as the catalog type's); repeat for several.
    #[arg(long = "price-as", value_name = "TYPE=CATALOG_TYPE", value_parser = PricingRules::alias)]
    price_aliases: Vec<(String, String)>,
    /// The AWS region whose prices apply when a plan's provider names none.
    #[arg(long, value_name = "REGION", value_parser = catalog_region)]
    price_region: Option<String>,
    /// Run deployments as plain subprocesses when no sandbox can be made here (no
    /// bubblewrap, no slirp4netns, not root). Template code can then reach this host.
    #[arg(long)]
    unsafe_no_sandbox: bool,
    /// Log bytes one deployment may send; past it the deployment is stopped, failed.
    #[arg(long, env = "ENVPLANE_QUOTA_LOG_BYTES", default_value_t = Quotas::default().log_bytes)]
    quota_log_bytes: u64,
    /// Steps one deployment may report; past it the deployment is stopped, failed.
    #[arg(long, env = "ENVPLANE_QUOTA_STEPS", default_value_t = Quotas::default().steps)]
    quota_steps: usize,
    /// Largest Terraform state accepted, in bytes (413 above it).
    #[arg(long, env = "ENVPLANE_QUOTA_STATE_BYTES", default_value_t = Quotas::default().state_bytes)]
    quota_state_bytes: usize,
    /// Largest saved plan accepted, in bytes (413 above it).
    #[arg(long, env = "ENVPLANE_QUOTA_PLAN_BYTES", default_value_t = Quotas::default().plan_bytes)]
    quota_plan_bytes: usize,
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6.
fn parse_range(value: &str) -> Result<String, String> {
    let (address, prefix) = value
        .split_once('/')
        .ok_or("expected ADDRESS/PREFIX, e.g. 203.0.113.0/24")?;
    let address: std::net::IpAddr = address.parse().map_err(|e| format!("{address}: {e}"))?;
    let longest = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(prefix) if prefix <= longest => Ok(format!("{address}/{prefix}")),
        _ => Err(format!("the prefix must be 0 to {longest}")),
    }
}

/// The XDG data directory's `envplane`, outside any checkout: a repository a template
/// names must never contain the keys and the database.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| Path::new(&home).join(".local/share"))
            .context("neither XDG_DATA_HOME nor HOME is set: pass --data-dir")?,
    };
    Ok(base.join("envplane"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let mut config = LocalConfig::new(
        data_dir.clone(),
        args.api_url.unwrap_or_else(|| format!("http://{address}")),
    );
    config.max_parallel_deployments = args.max_parallel_deployments.into();
    config.local_repositories = args.local_repositories;
    config.blocked_ranges = args.blocked_ranges;
    config.allow_private_notification_targets = args.allow_private_notification_targets;
    config.notifications = !args.no_notifications;
    config.pricing = PricingRules {
        aliases: args.price_aliases.into_iter().collect(),
        default_region: args.price_region,
    };
    config.quotas = Quotas {
        log_bytes: args.quota_log_bytes,
        steps: args.quota_steps,
        state_bytes: args.quota_state_bytes,
        plan_bytes: args.quota_plan_bytes,
    };
    if args.unsafe_no_sandbox && matches!(config.isolation, Isolation::Unavailable(_)) {
        config.isolation = Isolation::Unsafe;
    }
    if let Some(runner) = args.runner {
        config.runner_binary = runner;
    }
    if let Some(tools_dir) = args.tools_dir {
        config.tools_dir = tools_dir;
    }
    let installation = envplane_local::open(config)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let (platform, _background) = installation.start().await?;
    if let Some(key) = platform.bootstrap().await? {
        let path = data_dir.join(ADMIN_KEY_FILE);
        write_private(&path, &key).await?;
        println!(
            "Created the default organization. Its admin key (also the operator's key) is shown once here and saved to {}:\n{}",
            path.display(),
            key.expose_secret()
        );
    }
    println!("envplane data directory: {}", data_dir.display());
    println!("envplane listening on http://{address}");
    axum::serve(listener, envplane_http::api_router(platform))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped with an error")
}

/// Writes the key readable by its owner only (0600), failing rather than overwriting.
async fn write_private(path: &Path, key: &SecretString) -> anyhow::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{}\n", key.expose_secret()).as_bytes())
        .await?;
    file.sync_all().await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("shutting down");
}

/// A region the price catalog has prices for.
fn catalog_region(region: &str) -> Result<String, String> {
    let catalog = cost::catalog();
    if catalog.regions().any(|known| known == region) {
        return Ok(region.to_string());
    }
    let known: Vec<&str> = catalog.regions().collect();
    Err(format!(
        "the price catalog has no prices for {region}; it has {}",
        known.join(", ")
    ))
}
