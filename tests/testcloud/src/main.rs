//! testcloud, a Terraform provider for the tests: its "cloud" is a directory of JSON
//! files, `<directory>/<kind>/<id>.json`, one a resource, holding the resource's
//! attributes. Tests change or delete them behind Terraform's back to make drift.
//!
//! ```hcl
//! provider "testcloud" { directory = "/tmp/cloud" }
//! resource "testcloud_instance" "web" { instance_type = "t3.micro", tags = { Name = "web" } }
//! resource "testcloud_volume" "data" { size = 10 }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{ValueAny, ValueEmpty, ValueString};
use tf_provider::{serve, Diagnostics, DynamicResource, Provider, Resource};
use AttributeConstraint::{Computed, Optional, Required};

/// The provider's `directory`, set by `configure`; the resources are made before it.
type Directory = Arc<OnceLock<PathBuf>>;

#[derive(Default)]
struct TestCloud {
    directory: Directory,
}

#[derive(Serialize, Deserialize)]
struct Config<'a> {
    #[serde(borrow)]
    directory: ValueString<'a>,
}

#[async_trait]
impl Provider for TestCloud {
    type Config<'a> = Config<'a>;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let directory = ("directory", AttributeType::String, Required);
        Some(schema("A cloud of JSON files in a directory", [directory]))
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Config<'a>,
    ) -> Option<()> {
        let Some(directory) = config.directory.as_option() else {
            diags.root_error_short("`directory` must be known when the provider is configured");
            return None;
        };
        // One configuration a process: Terraform starts a provider process for each.
        let _ = self.directory.set(PathBuf::from(directory.as_ref()));
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let instance = Kind::new(
            "instance",
            "i-",
            "A virtual machine",
            [
                ("instance_type", AttributeType::String, Required),
                (
                    "tags",
                    AttributeType::Map(AttributeType::String.into()),
                    Optional,
                ),
            ],
            &self.directory,
        );
        // In whole GiB: a fractional size is refused (a diagnostic) as it is decoded.
        let size = ("size", AttributeType::Number, Required);
        let volume = Kind::new("volume", "vol-", "A disk", [size], &self.directory);
        Some(HashMap::from([
            (
                "instance".into(),
                Box::new(instance) as Box<dyn DynamicResource>,
            ),
            ("volume".into(), Box::new(volume) as _),
        ]))
    }
}

fn schema(
    description: &str,
    attributes: impl IntoIterator<Item = (&'static str, AttributeType, AttributeConstraint)>,
) -> Schema {
    let attributes = attributes
        .into_iter()
        .map(|(name, attr_type, constraint)| {
            let attribute = Attribute {
                attr_type,
                description: Description::plain(name),
                constraint,
                ..Default::default()
            };
            (name.to_string(), attribute)
        })
        .collect();
    Schema {
        version: 1,
        block: Block {
            description: Description::plain(description),
            attributes,
            ..Default::default()
        },
    }
}

/// One resource type, `testcloud_<name>`. Every attribute is stored as Terraform sends
/// it, so one implementation serves both types.
struct Kind {
    name: &'static str,
    id_prefix: &'static str,
    schema: Schema,
    directory: Directory,
}

/// A resource's attributes by name: the JSON file's content.
type State = BTreeMap<String, ValueAny>;

impl Kind {
    /// A type with `attributes` and the computed `id`.
    fn new<const N: usize>(
        name: &'static str,
        id_prefix: &'static str,
        description: &str,
        attributes: [(&'static str, AttributeType, AttributeConstraint); N],
        directory: &Directory,
    ) -> Self {
        let id = ("id", AttributeType::String, Computed);
        Kind {
            name,
            id_prefix,
            schema: schema(description, attributes.into_iter().chain([id])),
            directory: directory.clone(),
        }
    }

    fn path(&self, diags: &mut Diagnostics, state: &State) -> Option<PathBuf> {
        let Some(directory) = self.directory.get() else {
            diags.root_error_short("the testcloud provider is not configured");
            return None;
        };
        let Some(ValueAny::String(id)) = state.get("id") else {
            diags.root_error_short(format!("a testcloud_{} without an id", self.name));
            return None;
        };
        Some(directory.join(self.name).join(format!("{id}.json")))
    }

    /// `state` as the schema has it: every attribute (null when the file lacks it), no
    /// other key, so that a hand-edited file cannot make a state Terraform rejects.
    fn conform(&self, mut state: State) -> State {
        let names = self.schema.block.attributes.keys();
        names
            .map(|name| (name.clone(), state.remove(name).unwrap_or_default()))
            .collect()
    }

    fn write(&self, diags: &mut Diagnostics, path: &Path, state: &State, new: bool) -> Option<()> {
        let result = (|| {
            std::fs::create_dir_all(path.parent().expect("a resource file has a directory"))?;
            // A new resource never overwrites another that got the same id.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(new)
                .create(true)
                .truncate(true)
                .open(path)?;
            let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
            file.write_all(&json)
        })();
        report(diags, "write", path, result)
    }
}

fn report<T>(
    diags: &mut Diagnostics,
    action: &str,
    path: &Path,
    result: std::io::Result<T>,
) -> Option<T> {
    result
        .map_err(|error| {
            diags.root_error(
                format!("testcloud could not {action} {}", path.display()),
                error.to_string(),
            )
        })
        .ok()
}

#[async_trait]
impl Resource for Kind {
    type State<'a> = State;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(self.schema.clone())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: State,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let path = self.path(diags, &state)?;
        let text = match std::fs::read(&path) {
            // Gone from the cloud: no state, so Terraform plans to create it again.
            Err(error) if error.kind() == ErrorKind::NotFound => return None,
            result => report(diags, "read", &path, result),
        };
        // On an error the resource is still there (as far as we know): keep its state.
        let Some(text) = text else {
            return Some((state, private_state));
        };
        match serde_json::from_slice::<State>(&text) {
            Ok(read) => Some((self.conform(read), private_state)),
            Err(error) => {
                diags.root_error(
                    format!("testcloud could not parse {}", path.display()),
                    error.to_string(),
                );
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        mut proposed: State,
        _config: State,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        proposed.insert("id".into(), ValueAny::Unknown);
        Some((proposed, ValueEmpty::Null))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: State,
        proposed: State,
        _config: State,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty, Vec<tf_provider::AttributePath>)> {
        // Every attribute changes in place: Terraform's proposal (the configuration,
        // with the prior id) is the plan, and no attribute forces a replacement.
        Some((proposed, private_state, vec![]))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: State,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        mut planned: State,
        _config: State,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let id = format!("{}{:016x}", self.id_prefix, rand::random::<u64>());
        planned.insert("id".into(), ValueAny::String(id));
        let path = self.path(diags, &planned)?;
        self.write(diags, &path, &planned, true)?;
        Some((planned, private_state))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: State,
        planned: State,
        _config: State,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let path = self.path(diags, &planned)?;
        self.write(diags, &path, &planned, false)?;
        Some((planned, private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: State,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let path = self.path(diags, &state)?;
        match std::fs::remove_file(&path) {
            // Already gone: what destroying it was for.
            Err(error) if error.kind() == ErrorKind::NotFound => Some(()),
            result => report(diags, "delete", &path, result),
        }
    }
}

fn main() -> anyhow::Result<()> {
    // tf-provider appends a backtrace to every diagnostic when RUST_BACKTRACE is set, and
    // Terraform 1.0 takes the "panic::" in its frames on stderr for a crash of its own.
    // Set before any thread starts.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve("testcloud", TestCloud::default()))
}
