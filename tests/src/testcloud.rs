//! testcloud (tests/testcloud), the tests' Terraform provider: Terraform applies real
//! resources, JSON files in a directory, that a test changes behind Terraform's back
//! with [`Cloud`] to make drift.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const SOURCE: &str = "envplane/testcloud";
pub const VERSION: &str = "0.1.0";

/// Lays out a Terraform unpacked filesystem mirror of the provider in `dir`, as the
/// runner finds one in the tools directory (`providers/`).
pub fn provider_mirror(dir: &Path) -> io::Result<()> {
    let binary = crate::binary("terraform-provider-testcloud");
    if !binary.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not built: `cargo build -p envplane-testcloud` (scripts/test builds every binary first)",
                binary.display()
            ),
        ));
    }
    let platform = dir
        .join("registry.terraform.io")
        .join(SOURCE)
        .join(VERSION)
        .join("linux_amd64");
    std::fs::create_dir_all(&platform)?;
    // std::fs::copy keeps the permissions: the binary is executable.
    std::fs::copy(
        binary,
        platform.join(format!("terraform-provider-testcloud_v{VERSION}")),
    )?;
    Ok(())
}

/// The Terraform configuration that requires the provider and points it at `cloud_dir`.
pub fn configuration(cloud_dir: &Path) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    testcloud = {{
      source  = "{SOURCE}"
      version = "{VERSION}"
    }}
  }}
}}

provider "testcloud" {{
  directory = {}
}}
"#,
        hcl_string(cloud_dir)
    )
}

/// `path` as an HCL string literal: JSON's escapes, and no template sequences.
fn hcl_string(path: &Path) -> String {
    let json = Value::String(path.display().to_string()).to_string();
    json.replace("${", "$${").replace("%{", "%%{")
}

/// The cloud the provider manages, `<dir>/<kind>/<id>.json`, seen and changed from
/// outside Terraform.
pub struct Cloud {
    dir: PathBuf,
}

const KINDS: [&str; 2] = ["instance", "volume"];

impl Cloud {
    pub fn new(dir: &Path) -> Self {
        Cloud {
            dir: dir.to_path_buf(),
        }
    }

    /// The instances' attributes (`id`, `instance_type`, `tags`), by id.
    pub fn instances(&self) -> Vec<Value> {
        self.list("instance")
    }

    /// The volumes' attributes (`id`, `size`), by id.
    pub fn volumes(&self) -> Vec<Value> {
        self.list("volume")
    }

    /// Whether no resource is left.
    pub fn is_empty(&self) -> bool {
        KINDS.iter().all(|kind| self.list(kind).is_empty())
    }

    /// Changes an instance's type, as someone with the cloud's console would.
    pub fn set_instance_type(&self, id: &str, instance_type: &str) {
        let path = self.path("instance", id);
        let mut instance = read(&path);
        instance["instance_type"] = instance_type.into();
        std::fs::write(&path, instance.to_string())
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }

    /// Deletes the resource `id` (an instance or a volume).
    pub fn delete(&self, id: &str) {
        let path = KINDS
            .iter()
            .map(|kind| self.path(kind, id))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no resource {id} in {}", self.dir.display()));
        std::fs::remove_file(&path)
            .unwrap_or_else(|error| panic!("delete {}: {error}", path.display()));
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        self.dir.join(kind).join(format!("{id}.json"))
    }

    fn list(&self, kind: &str) -> Vec<Value> {
        let dir = self.dir.join(kind);
        let entries = match std::fs::read_dir(&dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
            result => result.unwrap_or_else(|error| panic!("list {}: {error}", dir.display())),
        };
        let mut paths: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
        paths.sort();
        paths.iter().map(|path| read(path)).collect()
    }
}

fn read(path: &Path) -> Value {
    let text =
        std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_slice(&text)
        .unwrap_or_else(|error| panic!("parse {}: {error}", path.display()))
}
