//! `envplane plan show`: a deployment's plan as Terraform prints it, without its
//! sensitive values.

use super::http::ApiClient;
use super::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a deployment's latest plan: Terraform's text, or with `--output json` the
    /// whole answer (its summary and `terraform show -json`, sensitive values removed).
    Show {
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
    },
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Show { id } => {
            let plan = api.get(&["v1", "deployments", &id, "plan"]).await?;
            match format {
                Format::Json => output::print_json(&plan),
                Format::Table => print!("{}", plan["text"].as_str().unwrap_or_default()),
            }
            Ok(())
        }
    }
}
