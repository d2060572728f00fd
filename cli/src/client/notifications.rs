//! `envplane notification-target`: where a project's deployment events are sent. A
//! webhook target's signing secret is shown once, at creation.

use envplane_core::model::NotificationTarget;
use envplane_core::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{ApiClient, Paging, ProjectFilter};
use super::output::{self, Format, Render};

const EVENTS: [&str; 4] = [
    "deployment.succeeded",
    "deployment.failed",
    "deployment.waiting_for_approval",
    "environment.expired",
];

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send a project's events to a signed HTTPS webhook or a Slack incoming webhook
    /// (needs the admin role); a webhook's signing secret is shown this once.
    Create(NewTarget),
    /// List targets, optionally of one project.
    List {
        #[command(flatten)]
        project: ProjectFilter,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one target.
    Show { id: String },
    /// Stop sending to a target.
    Delete { id: String },
}

#[derive(Debug, clap::Args, Serialize)]
pub struct NewTarget {
    name: String,
    #[arg(long = "project", value_name = "ID")]
    project_id: String,
    /// `webhook` (JSON, signed in X-Envplane-Signature-256) or `slack`.
    #[arg(long, value_parser = ["webhook", "slack"])]
    kind: String,
    /// Where to send: HTTPS, on a public host (`--url` names the envplane API).
    #[arg(long = "target-url", value_name = "URL", id = "target_url")]
    #[serde(rename = "url")]
    target_url: String,
    /// An event to send; repeat for several.
    #[arg(long = "event", value_name = "EVENT", required = true,
          value_parser = clap::builder::PossibleValuesParser::new(EVENTS))]
    events: Vec<String>,
}

/// A new target as the API answers it: its fields and, for a webhook, its secret.
#[derive(Deserialize)]
struct CreatedTarget {
    #[serde(flatten)]
    target: NotificationTarget,
    secret: Option<SecretString>,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    let path = ["v1", "notification-targets"];
    match command {
        Command::Create(input) => {
            let created = api.post(&path, &input).await?;
            match format {
                Format::Json => output::print_json(&created),
                Format::Table => print_created(&output::parse(created)?),
            }
        }
        Command::List { project, paging } => {
            let listing = api.list(&path, &project.query(), &paging).await?;
            output::print_list::<NotificationTarget>(format, listing)?;
        }
        Command::Show { id } => {
            let target = api.get(&["v1", "notification-targets", &id]).await?;
            output::print_one::<NotificationTarget>(format, target)?;
        }
        Command::Delete { id } => {
            api.delete(&["v1", "notification-targets", &id]).await?;
            let message = format!("Deleted notification target {id}.");
            output::print_done(format, &message, json!({ "id": id, "deleted": true }));
        }
    }
    Ok(())
}

fn print_created(created: &CreatedTarget) {
    println!("{}", output::details_table(&created.target));
    if let Some(secret) = &created.secret {
        println!(
            "Deliveries are signed with the secret below (X-Envplane-Signature-256); it is shown once and cannot be shown again:\n{}",
            secret.expose_secret()
        );
    }
}

impl Render for NotificationTarget {
    const COLUMNS: &'static [&'static str] = &["id", "name", "project", "kind", "origin", "events"];

    fn row(&self) -> Vec<String> {
        let events: Vec<&str> = self.events.iter().map(|event| event.as_str()).collect();
        vec![
            self.id.clone(),
            self.name.clone(),
            self.project_id.clone(),
            self.kind.as_str().to_string(),
            self.origin.clone(),
            events.join(", "),
        ]
    }
}
