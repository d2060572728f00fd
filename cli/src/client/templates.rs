//! `envplane template`: where an environment's code comes from.

use envplane_core::model::{IacType, Template};
use serde::Serialize;
use serde_json::json;

use super::http::{ApiClient, Paging, ProjectFilter};
use super::output::{self, Format, Render};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a template.
    Create(NewTemplate),
    /// List templates, optionally of one project.
    List {
        #[command(flatten)]
        project: ProjectFilter,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one template.
    Show { id: String },
    /// Change a template's name, code location or IaC version.
    Update {
        id: String,
        #[command(flatten)]
        changes: TemplateChanges,
    },
    /// Delete a template no environment uses.
    Delete { id: String },
}

#[derive(Debug, clap::Args, Serialize)]
pub struct NewTemplate {
    name: String,
    #[arg(long = "project", value_name = "ID")]
    project_id: String,
    /// Git repository URL (https://, ssh://, git@host:path; file:// in local mode).
    #[arg(long)]
    repository: String,
    /// Branch, tag or commit (the API defaults to main).
    #[arg(long)]
    revision: Option<String>,
    /// Directory inside the repository (the API defaults to its root).
    #[arg(long)]
    path: Option<String>,
    #[arg(long, value_parser = ["terraform"])]
    iac_type: Option<String>,
    /// Exact IaC version, e.g. 1.9.5.
    #[arg(long)]
    iac_version: String,
}

#[derive(Debug, clap::Args, Serialize)]
#[group(required = true, multiple = true)]
pub struct TemplateChanges {
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    iac_version: Option<String>,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(input) => {
            let template = api.post(&["v1", "templates"], &input).await?;
            output::print_one::<Template>(format, template)?;
        }
        Command::List { project, paging } => {
            let filters = project.query();
            let listing = api.list(&["v1", "templates"], &filters, &paging).await?;
            output::print_list::<Template>(format, listing)?;
        }
        Command::Show { id } => {
            let template = api.get(&["v1", "templates", &id]).await?;
            output::print_one::<Template>(format, template)?;
        }
        Command::Update { id, changes } => {
            let template = api.patch(&["v1", "templates", &id], &changes).await?;
            output::print_one::<Template>(format, template)?;
        }
        Command::Delete { id } => {
            api.delete(&["v1", "templates", &id]).await?;
            let message = format!("Deleted template {id}.");
            output::print_done(format, &message, json!({ "id": id, "deleted": true }));
        }
    }
    Ok(())
}

impl Render for Template {
    const COLUMNS: &'static [&'static str] =
        &["id", "name", "repository", "revision", "path", "iac"];

    fn row(&self) -> Vec<String> {
        let iac_type = match self.iac_type {
            IacType::Terraform => "terraform",
        };
        vec![
            self.id.clone(),
            self.name.clone(),
            self.repository.clone(),
            self.revision.clone(),
            self.path.clone(),
            format!("{iac_type} {}", self.iac_version),
        ]
    }
}
