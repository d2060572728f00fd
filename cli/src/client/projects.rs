//! `envplane project`: the folders that hold templates and environments.

use envplane_core::model::Project;
use serde::Serialize;
use serde_json::json;

use super::http::{ApiClient, Paging};
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a project.
    Create(NewProject),
    /// List projects.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one project.
    Show { id: String },
    /// Rename a project or change its description.
    Update {
        id: String,
        #[command(flatten)]
        changes: ProjectChanges,
    },
    /// Delete an empty project.
    Delete { id: String },
}

#[derive(Debug, clap::Args, Serialize)]
pub struct NewProject {
    name: String,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, clap::Args, Serialize)]
#[group(required = true, multiple = true)]
pub struct ProjectChanges {
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(input) => {
            let project = api.post(&["v1", "projects"], &input).await?;
            output::print_one::<Project>(format, project)?;
        }
        Command::List { paging } => {
            let listing = api.list(&["v1", "projects"], &[], &paging).await?;
            output::print_list::<Project>(format, listing)?;
        }
        Command::Show { id } => {
            let project = api.get(&["v1", "projects", &id]).await?;
            output::print_one::<Project>(format, project)?;
        }
        Command::Update { id, changes } => {
            let project = api.patch(&["v1", "projects", &id], &changes).await?;
            output::print_one::<Project>(format, project)?;
        }
        Command::Delete { id } => {
            api.delete(&["v1", "projects", &id]).await?;
            let message = format!("Deleted project {id}.");
            output::print_done(format, &message, json!({ "id": id, "deleted": true }));
        }
    }
    Ok(())
}

impl Render for Project {
    const COLUMNS: &'static [&'static str] = &["id", "name", "description"];

    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            output::or_dash(self.description.as_deref()),
        ]
    }
}
