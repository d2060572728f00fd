//! envplane-ops: reads and flips the active-region switch in the table, with the
//! operator's own AWS credentials (from the environment). This file only parses the
//! command line and wires; the procedure is `envplane_aws::ops` over core's.

use std::time::Duration;

use clap::{Parser, Subcommand};
use envplane_aws::ops::{self, Flip};
use envplane_core::region::RegionName;

#[derive(Parser)]
#[command(name = "envplane-ops", version, about)]
struct Cli {
    /// The platform's DynamoDB global table.
    #[arg(long, env = "ENVPLANE_TABLE_NAME")]
    table: String,
    /// The region active before the first failover (infra's primary region).
    #[arg(long, env = "ENVPLANE_HOME_REGION", value_parser = region)]
    home_region: RegionName,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Which region is active, read from one region's replica (the home region's by
    /// default).
    Status {
        #[arg(long, value_parser = region)]
        region: Option<RegionName>,
    },
    /// Makes `--to` the active region.
    Failover {
        #[arg(long, value_parser = region)]
        to: RegionName,
        #[command(flatten)]
        options: FlipOptions,
    },
    /// Makes the region that was active before the last failover active again.
    Failback {
        #[command(flatten)]
        options: FlipOptions,
    },
}

#[derive(clap::Args)]
struct FlipOptions {
    /// The most replication lag (seconds) a flip accepts without --force.
    #[arg(long, default_value_t = 5)]
    max_lag_seconds: u64,
    /// Flip even when the lag is above the bound or cannot be measured (the active
    /// region is down): writes it had not replicated are lost.
    #[arg(long)]
    force: bool,
    /// Who flips, for the switch's record.
    #[arg(long, env = "USER", default_value = "operator")]
    by: String,
}

fn region(name: &str) -> Result<RegionName, String> {
    RegionName::parse(name).map_err(|error| error.to_string())
}

impl FlipOptions {
    fn flip(self, to: Option<RegionName>) -> Flip {
        Flip {
            to,
            max_lag: Duration::from_secs(self.max_lag_seconds),
            force: self.force,
            by: self.by,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Status { region } => {
            let region = region.unwrap_or_else(|| cli.home_region.clone());
            ops::status(&cli.table, &cli.home_region, &region).await?
        }
        Command::Failover { to, options } => {
            ops::failover(&cli.table, &cli.home_region, options.flip(Some(to))).await?
        }
        Command::Failback { options } => {
            ops::failover(&cli.table, &cli.home_region, options.flip(None)).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
