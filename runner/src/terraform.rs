//! What the runner reads from and writes for Terraform: the backend override, the
//! provider mirror's CLI configuration, the plan summary and the outputs.

use std::path::Path;

use envplane_core::deployment::{PlanSummary, PlanView};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::mask::Masker;

/// The file the runner adds when the template declares no backend of its own.
pub const BACKEND_FILE: &str = "envplane_backend.tf";
const BACKEND_BLOCK: &str = "terraform {\n  backend \"http\" {}\n}\n";

/// Whether any `.tf` file of the directory declares a backend (a `backend "..."` block
/// inside `terraform { }`). Comments are skipped; that is all the parsing it needs.
pub fn declares_backend(dir: &Path) -> std::io::Result<bool> {
    for path in tf_files(dir)? {
        if text_declares_backend(&std::fs::read_to_string(&path)?) {
            return Ok(true);
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

/// The override file that adds the cost tags to the default AWS provider.
pub const TAGS_FILE: &str = "envplane_tags_override.tf";

/// Adds `tags` as the `default_tags` of the root module's default (unaliased) AWS
/// provider configuration, through an override file (it replaces a `default_tags` block
/// the template wrote). `false`: the directory has no such block to override.
pub fn add_default_tags(
    dir: &Path,
    tags: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<bool> {
    let mut declared = false;
    for path in tf_files(dir)? {
        declared |= declares_default_aws_provider(&std::fs::read_to_string(path)?);
    }
    if declared {
        let tags = serde_json::to_string(tags).expect("strings serialize");
        let block =
            format!("provider \"aws\" {{\n  default_tags {{\n    tags = {tags}\n  }}\n}}\n");
        std::fs::write(dir.join(TAGS_FILE), block)?;
    }
    Ok(declared)
}

fn tf_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "tf") && path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

/// Whether `text` has a `provider "aws"` block without `alias` (by its lines and
/// braces: enough for how provider blocks are written).
fn declares_default_aws_provider(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let opens = line.starts_with("provider \"aws\"") || line.starts_with("provider aws");
        if !opens || !line.contains('{') {
            continue;
        }
        let mut depth = brace_depth(line);
        let mut aliased = false;
        while depth > 0 {
            let Some(inner) = lines.next() else { break };
            aliased |= depth == 1 && inner.starts_with("alias");
            depth += brace_depth(inner);
        }
        if !aliased {
            return true;
        }
    }
    false
}

fn brace_depth(line: &str) -> i32 {
    line.chars()
        .map(|c| match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        })
        .sum()
}

/// Where, inside the tools directory, the operator keeps providers for offline
/// installation: a Terraform filesystem mirror (`<host>/<namespace>/<type>/...`).
pub const PROVIDER_MIRROR_DIR: &str = "providers";
/// The Terraform CLI configuration the runner writes when there is a mirror.
pub const CLI_CONFIG_FILE: &str = "envplane.tfrc";

/// The CLI configuration that installs the providers of `mirror` from it and every
/// other one as usual; `None` when the mirror holds no provider.
pub fn mirror_cli_config(mirror: &Path) -> std::io::Result<Option<String>> {
    let mut providers = Vec::new();
    for host in subdirectories(mirror)? {
        for namespace in subdirectories(&mirror.join(&host))? {
            for kind in subdirectories(&mirror.join(&host).join(&namespace))? {
                providers.push(format!("{host}/{namespace}/{kind}"));
            }
        }
    }
    if providers.is_empty() {
        return Ok(None);
    }
    providers.sort();
    let listed = serde_json::to_string(&providers).expect("strings serialize");
    let path = serde_json::to_string(&mirror.to_string_lossy()).expect("strings serialize");
    Ok(Some(format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = {path}\n    include = {listed}\n  }}\n  direct {{\n    exclude = {listed}\n  }}\n}}\n"
    )))
}

fn subdirectories(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
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

/// What replaces a value Terraform marks sensitive, as `terraform show` writes it.
const SENSITIVE: &str = "(sensitive value)";

/// The members of `terraform show -json <plan>` that describe the change; the others
/// (`planned_values`, `prior_state`, `configuration`, ...) repeat values or code.
const PLAN_VIEW_MEMBERS: [&str; 7] = [
    "format_version",
    "terraform_version",
    "variables",
    "resource_changes",
    "resource_drift",
    "output_changes",
    "errored",
];

/// The plan as people read it, made here in the sandbox so that no sensitive value
/// leaves it: `text` is `terraform show`'s, `shown` is `terraform show -json`'s. Every
/// value Terraform marks sensitive (by its `*_sensitive` twins, or a variable declared
/// `sensitive`) becomes "(sensitive value)", and both are masked of `secrets` (with
/// their encoded forms, as the log is). JSON whose masking breaks it is left out (null).
pub fn plan_view(
    text: &[u8],
    shown: &[u8],
    secrets: &[String],
) -> Result<PlanView, serde_json::Error> {
    let mut plan: Map<String, Value> = serde_json::from_slice(shown)?;
    let sensitive_variables = sensitive_variable_names(&plan);
    let provider_regions = provider_regions(&plan);
    plan.retain(|member, _| PLAN_VIEW_MEMBERS.contains(&member.as_str()));
    plan.insert("configuration".into(), provider_regions);
    if let Some(Value::Object(variables)) = plan.get_mut("variables") {
        for (name, variable) in variables.iter_mut() {
            if sensitive_variables.contains(name) {
                variable["value"] = Value::String(SENSITIVE.into());
            }
        }
    }
    for member in ["resource_changes", "resource_drift"] {
        if let Some(Value::Array(changes)) = plan.get_mut(member) {
            for change in changes
                .iter_mut()
                .filter_map(|change| change.get_mut("change"))
            {
                redact_change(change);
            }
        }
    }
    if let Some(Value::Object(outputs)) = plan.get_mut("output_changes") {
        outputs.values_mut().for_each(redact_change);
    }
    let json = mask_strings(Value::Object(plan), secrets);
    let json =
        serde_json::from_slice(&mask(&serde_json::to_vec(&json)?, secrets)).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(&mask(text, secrets)).into_owned();
    Ok(PlanView { text, json })
}

/// Of the configuration, only where each provider configuration says its resources
/// live (the `region` expression), for the cost estimate: `{"provider_config": {...}}`.
fn provider_regions(plan: &Map<String, Value>) -> Value {
    const KEPT: [&str; 4] = ["name", "full_name", "alias", "module_address"];
    let configs = plan
        .get("configuration")
        .and_then(|configuration| configuration["provider_config"].as_object());
    let reduced: Map<String, Value> = configs
        .into_iter()
        .flatten()
        .map(|(key, config)| {
            let mut kept: Map<String, Value> = KEPT
                .iter()
                .filter_map(|member| Some((member.to_string(), config.get(*member)?.clone())))
                .collect();
            if let Some(region) = config["expressions"].get("region") {
                kept.insert(
                    "expressions".into(),
                    serde_json::json!({ "region": region }),
                );
            }
            (key.clone(), Value::Object(kept))
        })
        .collect();
    serde_json::json!({ "provider_config": reduced })
}

fn sensitive_variable_names(plan: &Map<String, Value>) -> Vec<String> {
    plan.get("configuration")
        .and_then(|configuration| configuration["root_module"]["variables"].as_object())
        .map(|variables| {
            variables
                .iter()
                .filter(|(_, declared)| declared["sensitive"] == Value::Bool(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A change's `before` and `after`, with what its `before_sensitive` and
/// `after_sensitive` mark replaced.
fn redact_change(change: &mut Value) {
    for (value, marks) in [("before", "before_sensitive"), ("after", "after_sensitive")] {
        let marks = change.get(marks).cloned().unwrap_or(Value::Null);
        if let Some(value) = change.get_mut(value) {
            *value = redact(value.take(), &marks);
        }
    }
}

fn redact(value: Value, marks: &Value) -> Value {
    match (value, marks) {
        (_, Value::Bool(true)) => Value::String(SENSITIVE.into()),
        (Value::Object(fields), Value::Object(marks)) => Value::Object(
            fields
                .into_iter()
                .map(|(name, field)| {
                    let marks = marks.get(&name).unwrap_or(&Value::Null);
                    (name, redact(field, marks))
                })
                .collect(),
        ),
        (Value::Array(items), Value::Array(marks)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(at, item)| redact(item, marks.get(at).unwrap_or(&Value::Null)))
                .collect(),
        ),
        (value, _) => value,
    }
}

/// `bytes` through the log's masker: each secret and its encoded forms become `***`.
fn mask(bytes: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut masker = Masker::new(secrets);
    let mut masked = masker.push(bytes);
    masked.extend(masker.finish());
    masked
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
    fn cost_tags_override_only_a_default_aws_provider() {
        let tags = [("envplane:environment".to_string(), "env_1".to_string())].into();
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join("main.tf"), text).unwrap();
        for (text, overridden) in [
            ("resource \"aws_s3_bucket\" \"b\" {}\n", false),
            ("provider \"aws\" {\n  alias  = \"west\"\n  region = \"us-west-2\"\n}\n", false),
            ("provider \"aws\" {\n  region = \"eu-west-1\"\n  assume_role {\n    role_arn = \"x\"\n  }\n}\n", true),
            ("provider \"aws\" {}\n", true),
        ] {
            write(text);
            let _ = std::fs::remove_file(dir.path().join(TAGS_FILE));
            assert_eq!(add_default_tags(dir.path(), &tags).unwrap(), overridden, "{text}");
            assert_eq!(dir.path().join(TAGS_FILE).exists(), overridden, "{text}");
        }
        let written = std::fs::read_to_string(dir.path().join(TAGS_FILE)).unwrap();
        assert!(
            written.contains(r#"tags = {"envplane:environment":"env_1"}"#),
            "{written}"
        );
    }

    #[test]
    fn a_mirror_installs_its_providers_and_only_those() {
        let mirror = tempfile::tempdir().unwrap();
        assert_eq!(mirror_cli_config(mirror.path()).unwrap(), None);
        for provider in ["envplane/testcloud", "hashicorp/null"] {
            let version = format!("registry.terraform.io/{provider}/1.0.0/linux_amd64");
            std::fs::create_dir_all(mirror.path().join(version)).unwrap();
        }
        let config = mirror_cli_config(mirror.path()).unwrap().unwrap();
        let listed = r#"["registry.terraform.io/envplane/testcloud","registry.terraform.io/hashicorp/null"]"#;
        assert!(config.contains(&format!("include = {listed}")), "{config}");
        assert!(config.contains(&format!("exclude = {listed}")), "{config}");
        assert!(config.contains(&format!("path    = \"{}\"", mirror.path().display())));
    }

    #[test]
    fn a_plan_view_keeps_no_sensitive_value() {
        let shown = br#"{
            "format_version": "0.2",
            "terraform_version": "1.0.3",
            "variables": {"password": {"value": "p4ssw0rd!"}, "region": {"value": "eu-west-1"}},
            "planned_values": {"outputs": {"token": {"value": "t0ken-value"}}},
            "prior_state": {"values": {}},
            "configuration": {
                "provider_config": {"aws": {"name": "aws", "full_name": "registry.terraform.io/hashicorp/aws", "expressions": {
                    "region": {"references": ["var.region"]},
                    "access_key": {"constant_value": "AKIA-IN-THE-CODE"}
                }}},
                "root_module": {"variables": {"password": {"sensitive": true}, "region": {}}}
            },
            "resource_changes": [{
                "address": "aws_db_instance.db",
                "change": {
                    "actions": ["create"],
                    "before": null,
                    "after": {"username": "admin", "password": "p4ssw0rd!", "tags": ["a", "hunter2-tag"]},
                    "after_sensitive": {"password": true, "tags": [false, true]}
                }
            }],
            "output_changes": {
                "token": {"actions": ["create"], "before": null, "after": "t0ken-value", "after_sensitive": true},
                "url": {"actions": ["create"], "before": null, "after": "https://x/?k=c2VjcmV0LWtleQ", "after_sensitive": false}
            }
        }"#;
        let text = b"  + password = (sensitive value)\n  + url = \"https://x/?k=c2VjcmV0LWtleQ\"\n";
        let view = plan_view(text, shown, &["secret-key".to_string()]).unwrap();
        let json = view.json.to_string();
        for leaked in [
            "p4ssw0rd!",
            "hunter2-tag",
            "t0ken-value",
            "c2VjcmV0LWtleQ",
            "secret-key",
        ] {
            assert!(!json.contains(leaked), "{leaked} in {json}");
            assert!(!view.text.contains(leaked), "{leaked} in {}", view.text);
        }
        assert_eq!(view.json["variables"]["region"]["value"], "eu-west-1");
        assert_eq!(view.json["variables"]["password"]["value"], SENSITIVE);
        let after = &view.json["resource_changes"][0]["change"]["after"];
        assert_eq!(after["username"], "admin");
        assert_eq!(after["tags"], serde_json::json!(["a", SENSITIVE]));
        assert!(view.json.get("planned_values").is_none());
        // Of the configuration, only where the provider's resources live.
        assert_eq!(
            view.json["configuration"],
            serde_json::json!({"provider_config": {"aws": {
                "name": "aws", "full_name": "registry.terraform.io/hashicorp/aws",
                "expressions": {"region": {"references": ["var.region"]}}
            }}})
        );
        assert!(
            view.text.contains("+ url = \"https://x/?k=***"),
            "{}",
            view.text
        );
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
