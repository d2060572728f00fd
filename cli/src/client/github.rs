//! `envplane github`: the organization's GitHub connection (admins). Secrets are read
//! from files, never taken as arguments (shell history, `ps`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use envplane_core::model::GitHubConnection;
use serde_json::json;

use super::http::ApiClient;
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Connect the organization to a GitHub App installation, or to a token for local
    /// use; replaces the connection there was.
    Connect(ConnectArgs),
    /// Show the connection (never its secrets).
    Show,
    /// Disconnect the organization from GitHub.
    Disconnect,
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The GitHub App's id.
    #[arg(long, requires_all = ["installation_id", "private_key_file"], conflicts_with = "token_file")]
    app_id: Option<u64>,
    /// The App's installation on the organization's GitHub account.
    #[arg(long, requires = "app_id")]
    installation_id: Option<u64>,
    /// The App's private key, the PEM file GitHub gives.
    #[arg(long, value_name = "FILE", requires = "app_id")]
    private_key_file: Option<PathBuf>,
    /// A file holding a GitHub token, instead of an App (local use).
    #[arg(long, value_name = "FILE", required_unless_present = "app_id")]
    token_file: Option<PathBuf>,
    /// A file holding the webhook secret GitHub signs deliveries with (16 characters
    /// or more).
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: PathBuf,
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

impl ConnectArgs {
    fn body(&self) -> anyhow::Result<serde_json::Value> {
        let webhook_secret = read_secret(&self.webhook_secret_file)?;
        Ok(match (&self.private_key_file, &self.token_file) {
            (Some(key), _) => json!({
                "app_id": self.app_id,
                "installation_id": self.installation_id,
                // A PEM keeps its final newline.
                "private_key": std::fs::read_to_string(key)
                    .with_context(|| format!("cannot read {}", key.display()))?,
                "webhook_secret": webhook_secret,
            }),
            (None, Some(token)) => json!({
                "token": read_secret(token)?,
                "webhook_secret": webhook_secret,
            }),
            (None, None) => unreachable!("clap requires an App or a token"),
        })
    }
}

const PATH: [&str; 4] = ["v1", "organization", "vcs", "github"];

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Connect(args) => {
            let connection = api.put(&PATH, &args.body()?).await?;
            output::print_one::<GitHubConnection>(format, connection)?;
        }
        Command::Show => {
            let connection = api.get(&PATH).await?;
            output::print_one::<GitHubConnection>(format, connection)?;
        }
        Command::Disconnect => {
            api.delete(&PATH).await?;
            let message = "Disconnected the organization from GitHub.";
            output::print_done(format, message, json!({ "deleted": true }));
        }
    }
    Ok(())
}

impl Render for GitHubConnection {
    const COLUMNS: &'static [&'static str] = &["mode", "app id", "installation id", "updated"];

    fn row(&self) -> Vec<String> {
        vec![
            self.mode.clone(),
            output::or_dash(self.app_id.map(|id| id.to_string()).as_deref()),
            output::or_dash(self.installation_id.map(|id| id.to_string()).as_deref()),
            output::timestamp(&self.updated_at),
        ]
    }
}
