//! The client commands: each talks to the JSON API of a running platform.
//!
//! The connection and output flags belong to every object command (`envplane project
//! list --output json`, `envplane project --output json list`), not to `serve`.

mod api_keys;
mod audit;
mod deployments;
mod environments;
mod github;
mod http;
mod notifications;
mod organization;
mod output;
mod plans;
mod projects;
mod state;
mod templates;
mod variables;

use anyhow::Context;
use envplane_core::secrecy::SecretString;
use reqwest::Url;

use self::http::ApiClient;
use self::output::Format;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Show the caller's organization, or create one (operator key only).
    Organization {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: organization::Command,
    },
    /// Create, list and revoke API keys.
    ApiKey {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: api_keys::Command,
    },
    /// Manage projects, the folders of templates and environments.
    Project {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: projects::Command,
    },
    /// Manage templates: where an environment's code comes from.
    Template {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: templates::Command,
    },
    /// Manage environments: deployable instances of a template.
    Environment {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: environments::Command,
    },
    /// Send a project's deployment events to webhooks and Slack.
    NotificationTarget {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: notifications::Command,
    },
    /// Set, list and delete variables at a scope.
    Variable {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: variables::Command,
    },
    /// The organization's GitHub connection: pull request plans, comments, statuses,
    /// continuous deployment (admins only).
    Github {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: github::Command,
    },
    /// The organization's audit log, newest first (admins only).
    Audit {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: audit::Args,
    },
    /// Deploy an environment: apply (the default), plan only or destroy.
    Deploy {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: deployments::DeployArgs,
    },
    /// Approve a deployment waiting for approval: its saved plan is applied.
    Approve {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: deployments::ApproveArgs,
    },
    /// Reject a deployment waiting for approval.
    Reject {
        #[command(flatten)]
        globals: Globals,
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
    },
    /// Cancel a queued, running or waiting deployment.
    Cancel {
        #[command(flatten)]
        globals: Globals,
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
        /// End a running deployment at once, without waiting for its sandbox (admins
        /// only, audited): for one that cannot end by itself.
        #[arg(long)]
        force: bool,
    },
    /// Print a deployment's log.
    Logs {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: deployments::LogsArgs,
    },
    /// List an environment's deployments, newest first.
    Deployments {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: deployments::ListArgs,
    },
    /// Show a deployment.
    Deployment {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: deployments::Command,
    },
    /// A deployment's plan, as people read it.
    Plan {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: plans::Command,
    },
    /// An environment's saved Terraform states.
    State {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: state::Command,
    },
}

/// Where the API is, who calls it and how to print its answers.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Base URL of the envplane API.
    #[arg(
        long,
        env = "ENVPLANE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: Url,
    /// API key; prefer the environment variable, which stays out of shell history.
    #[arg(long, env = "ENVPLANE_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<SecretString>,
    /// How to print results.
    #[arg(long, short, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
}

impl Globals {
    fn connect(self) -> anyhow::Result<(ApiClient, Format)> {
        let api_key = self.api_key.context(
            "no API key: set ENVPLANE_API_KEY or pass --api-key \
             (`envplane serve` saves its admin key in <data-dir>/admin-key)",
        )?;
        Ok((ApiClient::new(self.url, api_key)?, self.output))
    }
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Organization { globals, command } => {
            let (api, format) = globals.connect()?;
            organization::run(&api, format, command).await
        }
        ClientCommand::ApiKey { globals, command } => {
            let (api, format) = globals.connect()?;
            api_keys::run(&api, format, command).await
        }
        ClientCommand::Project { globals, command } => {
            let (api, format) = globals.connect()?;
            projects::run(&api, format, command).await
        }
        ClientCommand::Template { globals, command } => {
            let (api, format) = globals.connect()?;
            templates::run(&api, format, command).await
        }
        ClientCommand::Environment { globals, command } => {
            let (api, format) = globals.connect()?;
            environments::run(&api, format, command).await
        }
        ClientCommand::NotificationTarget { globals, command } => {
            let (api, format) = globals.connect()?;
            notifications::run(&api, format, command).await
        }
        ClientCommand::Variable { globals, command } => {
            let (api, format) = globals.connect()?;
            variables::run(&api, format, command).await
        }
        ClientCommand::Github { globals, command } => {
            let (api, format) = globals.connect()?;
            github::run(&api, format, command).await
        }
        ClientCommand::Audit { globals, args } => {
            let (api, format) = globals.connect()?;
            audit::run(&api, format, args).await
        }
        ClientCommand::Deploy { globals, args } => {
            let (api, format) = globals.connect()?;
            deployments::deploy(&api, format, args).await
        }
        ClientCommand::Approve { globals, args } => {
            let (api, format) = globals.connect()?;
            deployments::approve(&api, format, args).await
        }
        ClientCommand::Reject { globals, id } => {
            let (api, format) = globals.connect()?;
            deployments::decide(&api, format, &id, "reject", false).await
        }
        ClientCommand::Cancel { globals, id, force } => {
            let (api, format) = globals.connect()?;
            deployments::cancel(&api, format, &id, force).await
        }
        ClientCommand::Logs { globals, args } => {
            let (api, format) = globals.connect()?;
            deployments::logs(&api, format, args).await
        }
        ClientCommand::Deployments { globals, args } => {
            let (api, format) = globals.connect()?;
            deployments::list(&api, format, args).await
        }
        ClientCommand::Deployment { globals, command } => {
            let (api, format) = globals.connect()?;
            deployments::run(&api, format, command).await
        }
        ClientCommand::Plan { globals, command } => {
            let (api, format) = globals.connect()?;
            plans::run(&api, format, command).await
        }
        ClientCommand::State { globals, command } => {
            let (api, format) = globals.connect()?;
            state::run(&api, format, command).await
        }
    }
}
