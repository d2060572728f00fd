//! The tests' Terraform provider, testcloud, with real Terraform: it creates, reads,
//! updates and deletes, and a change made behind Terraform's back shows as drift.

use std::path::PathBuf;
use std::process::Command;

use envplane_e2e::testcloud::{self, Cloud};
use envplane_e2e::tools_dir;
use envplane_runner::terraform::mirror_cli_config;
use serde_json::Value;

const RESOURCES: &str = r#"
resource "testcloud_instance" "web" {
  instance_type = "t3.micro"
  tags          = { Name = "web" }
}

resource "testcloud_volume" "data" {
  size = 10
}
"#;

/// Terraform 1.0.3 in a working directory, with a CLI configuration that installs
/// testcloud from a local mirror.
struct Terraform {
    binary: PathBuf,
    dir: PathBuf,
    cli_config: PathBuf,
}

impl Terraform {
    /// Runs `terraform <args>` and returns its exit code and stdout.
    fn run(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(&self.binary)
            .args(args)
            .current_dir(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            // The machine's own plugin cache or data dir would bypass the mirror.
            .env_remove("TF_PLUGIN_CACHE_DIR")
            .env_remove("TF_DATA_DIR")
            .output()
            .expect("run terraform");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!(
            "$ terraform {}\n{stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().expect("terraform exited"), stdout)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout) = self.run(args);
        assert_eq!(code, 0, "terraform {args:?} failed");
        stdout
    }

    /// `plan -detailed-exitcode`'s code (0: in sync, 2: changes) and the plan as JSON.
    fn plan(&self) -> (i32, Value) {
        let (code, _) = self.run(&[
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            "-out=plan.bin",
        ]);
        assert!(code == 0 || code == 2, "terraform plan failed ({code})");
        let json = self.ok(&["show", "-json", "plan.bin"]);
        (code, serde_json::from_str(&json).expect("the plan as JSON"))
    }
}

/// The entries of a plan's `key` (`resource_drift` or `resource_changes`) for `address`.
fn entries<'a>(plan: &'a Value, key: &str, address: &str) -> Vec<&'a Value> {
    plan[key]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["address"] == address)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn terraform_applies_testcloud_resources_and_sees_drift() {
    let binary = tools_dir().join("terraform/1.0.3/terraform");
    if !binary.is_file() {
        eprintln!(
            "SKIPPED: no Terraform 1.0.3 at {} (scripts/lib/install.sh, ensure_test_terraform)",
            binary.display()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { root.path().join(name) };
    let (mirror, cloud_dir, dir) = (path("mirror"), path("cloud"), path("work"));
    testcloud::provider_mirror(&mirror).expect("the provider mirror");
    let cli_configuration = mirror_cli_config(&mirror).unwrap().expect("a provider");
    std::fs::write(path("terraformrc"), cli_configuration).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let configuration = testcloud::configuration(&cloud_dir) + RESOURCES;
    std::fs::write(dir.join("main.tf"), configuration).unwrap();
    let terraform = Terraform {
        binary,
        dir,
        cli_config: path("terraformrc"),
    };
    let cloud = Cloud::new(&cloud_dir);

    terraform.ok(&["init", "-input=false", "-no-color"]);
    terraform.ok(&["apply", "-input=false", "-no-color", "-auto-approve"]);
    let instances = cloud.instances();
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["instance_type"], "t3.micro");
    assert_eq!(instances[0]["tags"]["Name"], "web");
    let instance = instances[0]["id"].as_str().unwrap().to_string();
    assert!(instance.starts_with("i-"), "{instance}");
    let volumes = cloud.volumes();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(volumes[0]["size"], 10);
    let volume = volumes[0]["id"].as_str().unwrap().to_string();
    assert_eq!(terraform.plan().0, 0, "in sync right after the apply");

    // Someone resizes the instance in the console: Terraform sees it and plans it back.
    cloud.set_instance_type(&instance, "t3.large");
    let (code, plan) = terraform.plan();
    assert_eq!(code, 2, "the drift is a change");
    let drift = entries(&plan, "resource_drift", "testcloud_instance.web");
    assert_eq!(drift.len(), 1, "{plan:#}");
    assert_eq!(drift[0]["change"]["before"]["instance_type"], "t3.micro");
    assert_eq!(drift[0]["change"]["after"]["instance_type"], "t3.large");
    let changes = entries(&plan, "resource_changes", "testcloud_instance.web");
    assert_eq!(
        changes[0]["change"]["actions"],
        serde_json::json!(["update"]),
        "{plan:#}"
    );
    assert_eq!(changes[0]["change"]["before"]["instance_type"], "t3.large");
    assert_eq!(changes[0]["change"]["after"]["instance_type"], "t3.micro");
    assert!(
        entries(&plan, "resource_drift", "testcloud_volume.data").is_empty(),
        "{plan:#}"
    );

    terraform.ok(&["apply", "-input=false", "-no-color", "-auto-approve"]);
    assert_eq!(cloud.instances()[0]["instance_type"], "t3.micro");
    assert_eq!(
        cloud.instances()[0]["id"],
        instance.as_str(),
        "updated in place"
    );
    assert_eq!(terraform.plan().0, 0, "back in sync");

    // A resource gone from the cloud is created again.
    cloud.delete(&volume);
    let (code, plan) = terraform.plan();
    assert_eq!(code, 2);
    let changes = entries(&plan, "resource_changes", "testcloud_volume.data");
    assert_eq!(
        changes[0]["change"]["actions"],
        serde_json::json!(["create"]),
        "{plan:#}"
    );

    terraform.ok(&["destroy", "-input=false", "-no-color", "-auto-approve"]);
    assert!(
        cloud.is_empty(),
        "{:?} {:?}",
        cloud.instances(),
        cloud.volumes()
    );
}
