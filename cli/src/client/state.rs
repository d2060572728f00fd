//! `envplane state`: the Terraform states an environment's deployments saved.

use envplane_core::service::StateVersion;

use super::http::{ApiClient, Paging};
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List an environment's saved states, newest first.
    Versions {
        #[arg(value_name = "ENV_ID")]
        environment_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Print one saved state as JSON, sensitive values masked (admins only).
    Show {
        #[arg(value_name = "ENV_ID")]
        environment_id: String,
        version: u64,
    },
    /// Release Terraform's lock on the state, whoever holds it (admins only, audited):
    /// for a lock a lost sandbox left behind.
    Unlock {
        #[arg(value_name = "ENV_ID")]
        environment_id: String,
    },
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Versions {
            environment_id,
            paging,
        } => {
            let path = ["v1", "environments", &environment_id, "state-versions"];
            let listing = api.list(&path, &[], &paging).await?;
            output::print_list::<StateVersion>(format, listing)
        }
        Command::Show {
            environment_id,
            version,
        } => {
            let version = version.to_string();
            let path = [
                "v1",
                "environments",
                &environment_id,
                "state-versions",
                &version,
            ];
            output::print_json(&api.get(&path).await?);
            Ok(())
        }
        Command::Unlock { environment_id } => {
            let path = ["v1", "environments", &environment_id, "state", "unlock"];
            api.post_query(&path, &[], &serde_json::json!({})).await?;
            println!("The state lock of {environment_id} was released.");
            Ok(())
        }
    }
}

impl Render for StateVersion {
    const COLUMNS: &'static [&'static str] =
        &["version", "serial", "deployment", "size", "created"];

    fn row(&self) -> Vec<String> {
        vec![
            self.version.to_string(),
            self.serial.to_string(),
            self.deployment_id.clone(),
            format!("{} B", self.size_bytes),
            output::timestamp(&self.created_at),
        ]
    }
}
