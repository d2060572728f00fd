//! What the runner reads from and writes for Terraform: the backend override, the
//! plan summary and the outputs.

use std::path::Path;

use envplane_core::deployment::PlanSummary;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The file the runner adds when the template declares no backend of its own.
pub const BACKEND_FILE: &str = "envplane_backend.tf";
const BACKEND_BLOCK: &str = "terraform {\n  backend \"http\" {}\n}\n";

/// Whether any `.tf` file of the directory declares a backend (a `backend "..."` block
/// inside `terraform { }`). Comments are skipped; that is all the parsing it needs.
pub fn declares_backend(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "tf") && path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            if text_declares_backend(&text) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn text_declares_backend(text: &str) -> bool {
    text.lines()
        .map(|line| {
            line.split("//")
                .next()
                .unwrap_or_default()
                .split('#')
                .next()
                .unwrap_or_default()
        })
        .any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.first() == Some(&"backend")
                && words.get(1).is_some_and(|name| name.starts_with('"'))
        })
}

/// Adds the platform's HTTP state backend; its address and credentials come from
/// `TF_HTTP_*` variables, so nothing secret lands in `.terraform/` or the plan file.
pub fn add_backend(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(BACKEND_FILE), BACKEND_BLOCK)
}

#[derive(Deserialize)]
struct ShownPlan {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
    #[serde(default)]
    output_changes: Map<String, Value>,
}

#[derive(Deserialize)]
struct ResourceChange {
    change: Change,
}

#[derive(Deserialize)]
struct Change {
    actions: Vec<String>,
}

/// Counts from `terraform show -json <plan>`: a replace counts as one add and one destroy.
pub fn plan_summary(shown: &[u8]) -> Result<PlanSummary, serde_json::Error> {
    let plan: ShownPlan = serde_json::from_slice(shown)?;
    let mut summary = PlanSummary::default();
    for resource in plan.resource_changes {
        for action in resource.change.actions {
            match action.as_str() {
                "create" => summary.add += 1,
                "update" => summary.change += 1,
                "delete" => summary.destroy += 1,
                _ => {}
            }
        }
    }
    summary.outputs_changed = plan.output_changes.values().any(|change| {
        change["actions"]
            .as_array()
            .is_some_and(|actions| actions.iter().any(|action| action != "no-op"))
    });
    Ok(summary)
}

/// Outputs from `terraform output -json`, sensitive ones replaced by `null` here, in
/// the sandbox, so their values never leave it; any secret inside the others (say a
/// `nonsensitive()` connection string) is masked.
pub fn public_outputs(
    output_json: &[u8],
    secrets: &[String],
) -> Result<Map<String, Value>, serde_json::Error> {
    let outputs: Map<String, Value> = serde_json::from_slice(output_json)?;
    Ok(outputs
        .into_iter()
        .map(|(name, output)| {
            let value = if output["sensitive"] == Value::Bool(true) {
                Value::Null
            } else {
                mask_strings(output.get("value").cloned().unwrap_or(Value::Null), secrets)
            };
            (name, value)
        })
        .collect())
}

fn mask_strings(value: Value, secrets: &[String]) -> Value {
    match value {
        Value::String(text) => Value::String(
            secrets
                .iter()
                .filter(|secret| !secret.is_empty())
                .fold(text, |text, secret| text.replace(secret.as_str(), "***")),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| mask_strings(item, secrets))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, field)| (name, mask_strings(field, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_found_outside_comments() {
        assert!(text_declares_backend(
            "terraform {\n  backend \"s3\" {\n    bucket = \"x\"\n  }\n}"
        ));
        assert!(!text_declares_backend(
            "terraform {\n  # backend \"s3\" {}\n}"
        ));
        assert!(!text_declares_backend(
            "// backend \"s3\" {}\nvariable \"backend\" {}"
        ));
        assert!(!text_declares_backend("locals { backend = \"s3\" }"));
    }

    #[test]
    fn the_backend_file_is_added_only_where_needed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), "output \"x\" { value = 1 }").unwrap();
        assert!(!declares_backend(dir.path()).unwrap());
        add_backend(dir.path()).unwrap();
        assert!(declares_backend(dir.path()).unwrap());
    }

    #[test]
    fn plans_are_summarised() {
        let shown = br#"{
            "resource_changes": [
                {"change": {"actions": ["create"]}},
                {"change": {"actions": ["update"]}},
                {"change": {"actions": ["delete", "create"]}},
                {"change": {"actions": ["no-op"]}},
                {"change": {"actions": ["read"]}}
            ],
            "output_changes": {"a": {"actions": ["no-op"]}, "b": {"actions": ["create"]}}
        }"#;
        let summary = plan_summary(shown).unwrap();
        assert_eq!((summary.add, summary.change, summary.destroy), (2, 1, 1));
        assert!(summary.outputs_changed);
        let quiet = plan_summary(br#"{"output_changes": {"a": {"actions": ["no-op"]}}}"#).unwrap();
        assert!(!quiet.has_changes());
    }

    #[test]
    fn sensitive_outputs_become_null() {
        let outputs = br#"{
            "greeting": {"sensitive": false, "type": "string", "value": "hello"},
            "password": {"sensitive": true, "type": "string", "value": "hunter2"}
        }"#;
        let public = public_outputs(outputs, &[]).unwrap();
        assert_eq!(public["greeting"], "hello");
        assert_eq!(public["password"], Value::Null);
        assert!(!serde_json::to_string(&public).unwrap().contains("hunter2"));
    }

    #[test]
    fn secrets_inside_plain_outputs_are_masked() {
        let outputs = br#"{"url": {"sensitive": false, "value": {"dsn": ["pg://u:hunter2@h"]}}}"#;
        let public = public_outputs(outputs, &["hunter2".to_string()]).unwrap();
        assert_eq!(public["url"], serde_json::json!({"dsn": ["pg://u:***@h"]}));
    }
}
