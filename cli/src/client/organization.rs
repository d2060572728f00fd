//! `envplane organization`: the caller's organization, and new ones (operator only).

use envplane_core::model::Organization;
use serde::Deserialize;
use serde_json::json;

use super::api_keys::{self, CreatedApiKey};
use super::http::ApiClient;
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the organization the API key belongs to.
    Show,
    /// Create an organization with its first admin key (platform operator only).
    Create { name: String },
}

/// A new organization as the API answers it, with its first admin key.
#[derive(Deserialize)]
struct CreatedOrganization {
    #[serde(flatten)]
    organization: Organization,
    admin_key: CreatedApiKey,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Show => {
            let organization = api.get(&["v1", "organization"]).await?;
            output::print_one::<Organization>(format, organization)?;
        }
        Command::Create { name } => {
            let created = api
                .post(&["v1", "organizations"], &json!({ "name": name }))
                .await?;
            match format {
                Format::Json => output::print_json(&created),
                Format::Table => {
                    let created: CreatedOrganization = output::parse(created)?;
                    println!("{}", output::details_table(&created.organization));
                    println!("Its first admin key:");
                    api_keys::print_created(&created.admin_key);
                }
            }
        }
    }
    Ok(())
}

impl Render for Organization {
    const COLUMNS: &'static [&'static str] = &["id", "name", "created"];

    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            output::timestamp(&self.created_at),
        ]
    }
}
