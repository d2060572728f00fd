//! `envplane api-key`: keys are created with their secret shown once, then only listed
//! by their hint, and revoked.

use envplane_core::auth::Role;
use envplane_core::model::ApiKey;
use envplane_core::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{ApiClient, Paging};
use super::output::{self, Format, Render};

const ROLES: [Role; 4] = [Role::Viewer, Role::Planner, Role::Deployer, Role::Admin];

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key; its secret is shown this once.
    Create(NewApiKey),
    /// List the keys you administer, revoked ones included.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a key; it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, clap::Args, Serialize)]
pub struct NewApiKey {
    /// A name telling what the key is for, e.g. `ci`.
    name: String,
    /// What the key may do; each role includes the ones before it.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ROLES.map(Role::as_str)))]
    role: String,
    /// Limit the key to this project.
    #[arg(long = "project", value_name = "ID")]
    project_id: Option<String>,
}

/// A new key as the API answers it: the key's fields and, this once, its secret.
#[derive(Deserialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    api_key: ApiKey,
    key: SecretString,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(input) => {
            let created = api.post(&["v1", "api-keys"], &input).await?;
            match format {
                Format::Json => output::print_json(&created),
                Format::Table => print_created(&output::parse(created)?),
            }
        }
        Command::List { paging } => {
            let listing = api.list(&["v1", "api-keys"], &[], &paging).await?;
            output::print_list::<ApiKey>(format, listing)?;
        }
        Command::Revoke { id } => {
            let revoked = api.delete(&["v1", "api-keys", &id]).await?;
            let message = format!("Revoked API key {id}.");
            output::print_done(
                format,
                &message,
                revoked.unwrap_or_else(|| json!({"id": id})),
            );
        }
    }
    Ok(())
}

/// Shows a new key's fields, then its secret with the warning that it is shown once.
pub fn print_created(created: &CreatedApiKey) {
    println!("{}", output::details_table(&created.api_key));
    println!(
        "The secret key below is shown once and cannot be shown again; store it now:\n{}",
        created.key.expose_secret()
    );
}

impl Render for ApiKey {
    const COLUMNS: &'static [&'static str] = &["id", "name", "role", "project", "hint", "revoked"];

    fn row(&self) -> Vec<String> {
        let mut name = self.name.clone();
        if self.operator {
            name.push_str(" (operator)");
        }
        vec![
            self.id.clone(),
            name,
            self.role.as_str().to_string(),
            output::or_dash(self.project_id.as_deref()),
            self.hint.clone(),
            self.revoked_at
                .as_ref()
                .map_or_else(|| "-".to_string(), output::timestamp),
        ]
    }
}
