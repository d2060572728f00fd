//! `envplane variable`: variables at the organization, a project, a template or an
//! environment. Sensitive values are write-only: they are never printed.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use envplane_core::model::{ScopeKind, Variable, VariableKind};
use envplane_core::secrecy::{ExposeSecret, SecretString};
use envplane_core::service::Scope;
use serde::Serialize;
use serde_json::{json, Value};

use super::http::{ApiClient, Listing, Paging};
use super::output::{self, Format, Render};

const SCOPE_SYNTAX: &str = "organization, project:ID, template:ID or environment:ID";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create or replace a variable.
    Set {
        /// The variable's name, e.g. `region` or `AWS_REGION`.
        name: String,
        /// The value; omit it or pass - to read it from stdin, which keeps secrets out of
        /// shell history.
        value: Option<SecretString>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Write-only: stored encrypted, never shown again.
        #[arg(long)]
        sensitive: bool,
        /// Set it in the environment of the IaC process instead of as a Terraform variable.
        #[arg(long)]
        env: bool,
    },
    /// List the variables set at a scope.
    List {
        #[command(flatten)]
        scope: ScopeArg,
        /// What a deployment gets: every scope merged, nearer winning (environment scope only).
        #[arg(long)]
        effective: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete a variable.
    Delete {
        /// The variable's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct ScopeArg {
    /// Where the variable is set: organization, project:ID, template:ID or environment:ID.
    #[arg(long, value_parser = parse_scope)]
    scope: Scope,
}

/// The PUT body; the value is exposed only while it is serialized.
#[derive(Serialize)]
struct PutVariable<'a> {
    value: &'a str,
    sensitive: bool,
    kind: &'static str,
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Set {
            name,
            value,
            scope,
            sensitive,
            env,
        } => {
            let value = given_or_stdin(value, &name, sensitive)?;
            let body = PutVariable {
                value: value.expose_secret(),
                sensitive,
                kind: if env { "env" } else { "terraform" },
            };
            let variable = api.put(&variable_path(&scope.scope, &name), &body).await?;
            output::print_one::<Variable>(format, redact(variable))
        }
        Command::List {
            scope,
            effective,
            paging,
        } => {
            if effective && !matches!(scope.scope, Scope::Environment(_)) {
                anyhow::bail!("--effective needs --scope environment:ID");
            }
            let filters = if effective {
                vec![("effective", "true")]
            } else {
                Vec::new()
            };
            let listing = api
                .list(&scope_path(&scope.scope), &filters, &paging)
                .await?;
            let listing = Listing {
                items: listing.items.into_iter().map(redact).collect(),
                next: listing.next,
            };
            output::print_list::<Variable>(format, listing)
        }
        Command::Delete { name, scope } => {
            api.delete(&variable_path(&scope.scope, &name)).await?;
            let scope = scope_label(&scope.scope);
            let message = format!("Deleted variable {name} at {scope}.");
            let json = json!({ "name": name, "scope": scope, "deleted": true });
            output::print_done(format, &message, json);
            Ok(())
        }
    }
}

/// Parses `--scope`: `organization`, `project:ID`, `template:ID` or `environment:ID`.
fn parse_scope(text: &str) -> Result<Scope, String> {
    let invalid = || format!("expected {SCOPE_SYNTAX}");
    if text == "organization" {
        return Ok(Scope::Organization);
    }
    let (kind, id) = text.split_once(':').ok_or_else(invalid)?;
    let scope: fn(String) -> Scope = match kind {
        "project" => Scope::Project,
        "template" => Scope::Template,
        "environment" => Scope::Environment,
        _ => return Err(invalid()),
    };
    let id = id.trim();
    if id.is_empty() {
        return Err(format!("the {kind} id is missing; {}", invalid()));
    }
    Ok(scope(id.to_string()))
}

/// The collection path of a scope's variables.
fn scope_path(scope: &Scope) -> Vec<&str> {
    match scope {
        Scope::Organization => vec!["v1", "organization", "variables"],
        Scope::Project(id) => vec!["v1", "projects", id, "variables"],
        Scope::Template(id) => vec!["v1", "templates", id, "variables"],
        Scope::Environment(id) => vec!["v1", "environments", id, "variables"],
    }
}

fn variable_path<'a>(scope: &'a Scope, name: &'a str) -> Vec<&'a str> {
    let mut path = scope_path(scope);
    path.push(name);
    path
}

/// A scope as `--scope` takes it, so that it can be copied back.
fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Organization => "organization".to_string(),
        Scope::Project(id) => format!("project:{id}"),
        Scope::Template(id) => format!("template:{id}"),
        Scope::Environment(id) => format!("environment:{id}"),
    }
}

/// The value given on the command line, or else (also for `-`) the one on stdin.
fn given_or_stdin(
    given: Option<SecretString>,
    name: &str,
    sensitive: bool,
) -> anyhow::Result<SecretString> {
    if let Some(value) = given.filter(|value| value.expose_secret() != "-") {
        if sensitive {
            eprintln!(
                "note: a value on the command line may stay in shell history; \
                 pipe it on stdin instead"
            );
        }
        return Ok(value);
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Enter the value of {name}, then press Ctrl-D:");
    }
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .context("cannot read the value from stdin")?;
    Ok(SecretString::from(without_trailing_newline(value)))
}

/// Drops one trailing newline (`\n` or `\r\n`): the one `echo` or a file adds.
fn without_trailing_newline(mut value: String) -> String {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    value
}

/// The API never answers a sensitive value; blank it anyway, in case it ever did.
fn redact(mut variable: Value) -> Value {
    if variable["sensitive"] == Value::Bool(true) {
        if let Some(value) = variable.get_mut("value") {
            *value = Value::Null;
        }
    }
    variable
}

impl Render for Variable {
    const COLUMNS: &'static [&'static str] = &["name", "kind", "sensitive", "value", "scope"];

    fn row(&self) -> Vec<String> {
        let kind = match self.kind {
            VariableKind::Terraform => "terraform",
            VariableKind::Env => "env",
        };
        let value = if self.sensitive {
            "***".to_string()
        } else {
            output::or_dash(self.value.as_deref())
        };
        let scope = match self.scope {
            ScopeKind::Organization => Scope::Organization,
            ScopeKind::Project => Scope::Project(self.scope_id.clone()),
            ScopeKind::Template => Scope::Template(self.scope_id.clone()),
            ScopeKind::Environment => Scope::Environment(self.scope_id.clone()),
        };
        vec![
            self.name.clone(),
            kind.to_string(),
            output::yes_no(self.sensitive),
            value,
            scope_label(&scope),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        assert_eq!(parse_scope("organization"), Ok(Scope::Organization));
        assert_eq!(
            parse_scope("project:prj_1"),
            Ok(Scope::Project("prj_1".into()))
        );
        assert_eq!(
            parse_scope("template:tpl_1"),
            Ok(Scope::Template("tpl_1".into()))
        );
        assert_eq!(
            parse_scope("environment:env_1"),
            Ok(Scope::Environment("env_1".into()))
        );
    }

    #[test]
    fn malformed_scopes_say_what_is_expected() {
        for bad in ["", "org", "project", "project:", "planet:x", "Organization"] {
            let error = parse_scope(bad).unwrap_err();
            assert!(error.contains(SCOPE_SYNTAX), "{bad}: {error}");
        }
    }

    #[test]
    fn scopes_map_to_their_paths() {
        let name = "TF_VAR";
        let project = Scope::Project("prj_1".into());
        assert_eq!(
            variable_path(&project, name),
            ["v1", "projects", "prj_1", "variables", "TF_VAR"]
        );
        assert_eq!(
            scope_path(&Scope::Organization),
            ["v1", "organization", "variables"]
        );
        let environment = Scope::Environment("env_1".into());
        assert_eq!(
            scope_path(&environment),
            ["v1", "environments", "env_1", "variables"]
        );
        assert_eq!(scope_label(&environment), "environment:env_1");
        assert_eq!(parse_scope(&scope_label(&environment)), Ok(environment));
    }

    #[test]
    fn one_trailing_newline_is_trimmed() {
        assert_eq!(without_trailing_newline("s3cret\n".into()), "s3cret");
        assert_eq!(without_trailing_newline("s3cret\r\n".into()), "s3cret");
        assert_eq!(without_trailing_newline("two\n\n".into()), "two\n");
        assert_eq!(without_trailing_newline(" spaced ".into()), " spaced ");
    }

    #[test]
    fn sensitive_values_render_masked() {
        let variable: Variable = serde_json::from_value(redact(json!({
            "name": "TOKEN", "value": "leaked", "sensitive": true, "kind": "env",
            "scope": "project", "scope_id": "prj_1",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"
        })))
        .unwrap();
        assert_eq!(variable.value, None);
        let table = output::list_table(&[variable]).to_string();
        assert!(
            table.contains("***") && !table.contains("leaked"),
            "{table}"
        );
        assert!(table.contains("project:prj_1"), "{table}");
    }
}
