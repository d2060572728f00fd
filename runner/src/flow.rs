//! Custom flows: shell commands a template runs before and after each IaC step,
//! declared in an `envplane.yml` at the template path (see docs/custom-flows.md).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The only file name looked for (not `envplane.yaml`: one name, no ambiguity).
pub const FLOW_FILE_NAME: &str = "envplane.yml";
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
pub const MAX_COMMAND_BYTES: usize = 8 * 1024;
const SUPPORTED_VERSION: u64 = 1;

/// A point in a deployment where custom commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    BeforeInit,
    AfterInit,
    BeforePlan,
    AfterPlan,
    BeforeApply,
    AfterApply,
    BeforeDestroy,
    AfterDestroy,
}

impl Hook {
    /// Every hook, in the order a deployment reaches them.
    pub const ALL: [Hook; 8] = [
        Hook::BeforeInit,
        Hook::AfterInit,
        Hook::BeforePlan,
        Hook::AfterPlan,
        Hook::BeforeApply,
        Hook::AfterApply,
        Hook::BeforeDestroy,
        Hook::AfterDestroy,
    ];

    /// The key in `envplane.yml`, such as `before_init`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::BeforeInit => "before_init",
            Hook::AfterInit => "after_init",
            Hook::BeforePlan => "before_plan",
            Hook::AfterPlan => "after_plan",
            Hook::BeforeApply => "before_apply",
            Hook::AfterApply => "after_apply",
            Hook::BeforeDestroy => "before_destroy",
            Hook::AfterDestroy => "after_destroy",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why an `envplane.yml` was refused; every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} must be a regular file (symbolic links are not followed)", path.display())]
    NotARegularFile { path: PathBuf },
    #[error("{FLOW_FILE_NAME} is not valid UTF-8")]
    NotUtf8,
    #[error(
        "{FLOW_FILE_NAME} is {size} bytes, more than the limit of {MAX_FILE_BYTES} bytes (256 KiB)"
    )]
    FileTooLarge { size: u64 },
    #[error("invalid {FLOW_FILE_NAME}: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error(
        "{FLOW_FILE_NAME} version {0} is not supported (the only version is {SUPPORTED_VERSION})"
    )]
    UnsupportedVersion(u64),
    #[error("{FLOW_FILE_NAME}: hooks.{hook}: command {position} is empty")]
    EmptyCommand { hook: Hook, position: usize },
    #[error("{FLOW_FILE_NAME}: hooks.{hook}: command {position} is {length} bytes, more than the limit of {MAX_COMMAND_BYTES} bytes (8 KiB)")]
    CommandTooLong {
        hook: Hook,
        position: usize,
        length: usize,
    },
    #[error("{FLOW_FILE_NAME}: hooks.{hook}: command {position} contains a NUL byte")]
    NulByte { hook: Hook, position: usize },
}

/// The validated hooks of one template. An empty flow runs nothing extra.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Indexed by [`Hook::index`].
    commands: [Vec<String>; Hook::ALL.len()],
}

impl Flow {
    /// Reads `<dir>/envplane.yml`; a template without one has an empty flow.
    pub fn load(dir: &Path) -> Result<Flow, FlowError> {
        let path = dir.join(FLOW_FILE_NAME);
        // The file comes from the repository: a symlink could point at a file
        // of the sandbox (a token, say) whose content a parse error would echo.
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Flow::default())
            }
            Err(source) => return Err(FlowError::Read { path, source }),
        };
        if !metadata.is_file() {
            return Err(FlowError::NotARegularFile { path });
        }
        let text = read_capped(&path)?;
        Flow::parse(&text)
    }

    /// Parses and validates the text of an `envplane.yml`.
    pub fn parse(text: &str) -> Result<Flow, FlowError> {
        ensure_file_size(text.len() as u64)?;
        let Some(file) = serde_yaml_ng::from_str::<Option<FlowFile>>(text)? else {
            return Ok(Flow::default()); // empty or comment-only file
        };
        if let Some(version) = file.version {
            if version != SUPPORTED_VERSION {
                return Err(FlowError::UnsupportedVersion(version));
            }
        }
        let mut flow = Flow::default();
        for (hook, commands) in file.hooks.unwrap_or_default().into_entries() {
            let commands = commands.map(|Commands(list)| list).unwrap_or_default();
            validate_commands(hook, &commands)?;
            flow.commands[hook.index()] = commands;
        }
        Ok(flow)
    }

    /// The commands of `hook`, in the order they run (empty when none).
    pub fn commands(&self, hook: Hook) -> &[String] {
        &self.commands[hook.index()]
    }

    pub fn is_empty(&self) -> bool {
        self.commands.iter().all(Vec::is_empty)
    }
}

fn ensure_file_size(size: u64) -> Result<(), FlowError> {
    if size > MAX_FILE_BYTES {
        return Err(FlowError::FileTooLarge { size });
    }
    Ok(())
}

/// Reads at most one byte past the limit, whatever size the file claims.
fn read_capped(path: &Path) -> Result<String, FlowError> {
    let read_error = |source| FlowError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let claimed_size = file.metadata().map_err(read_error)?.len();
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    ensure_file_size(claimed_size.max(bytes.len() as u64))?;
    String::from_utf8(bytes).map_err(|_| FlowError::NotUtf8)
}

fn validate_commands(hook: Hook, commands: &[String]) -> Result<(), FlowError> {
    for (index, command) in commands.iter().enumerate() {
        let position = index + 1;
        if command.trim().is_empty() {
            return Err(FlowError::EmptyCommand { hook, position });
        }
        if command.len() > MAX_COMMAND_BYTES {
            return Err(FlowError::CommandTooLong {
                hook,
                position,
                length: command.len(),
            });
        }
        // It could never be passed to `sh -c` as an argument.
        if command.contains('\0') {
            return Err(FlowError::NulByte { hook, position });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with the keys `version` and `hooks`"
)]
struct FlowFile {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    hooks: Option<HooksFile>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a map from hook names (such as `before_init`) to commands"
)]
struct HooksFile {
    #[serde(default)]
    before_init: Option<Commands>,
    #[serde(default)]
    after_init: Option<Commands>,
    #[serde(default)]
    before_plan: Option<Commands>,
    #[serde(default)]
    after_plan: Option<Commands>,
    #[serde(default)]
    before_apply: Option<Commands>,
    #[serde(default)]
    after_apply: Option<Commands>,
    #[serde(default)]
    before_destroy: Option<Commands>,
    #[serde(default)]
    after_destroy: Option<Commands>,
}

impl HooksFile {
    fn into_entries(self) -> [(Hook, Option<Commands>); 8] {
        [
            (Hook::BeforeInit, self.before_init),
            (Hook::AfterInit, self.after_init),
            (Hook::BeforePlan, self.before_plan),
            (Hook::AfterPlan, self.after_plan),
            (Hook::BeforeApply, self.before_apply),
            (Hook::AfterApply, self.after_apply),
            (Hook::BeforeDestroy, self.before_destroy),
            (Hook::AfterDestroy, self.after_destroy),
        ]
    }
}

/// A hook's value: one command string or a list of them.
struct Commands(Vec<String>);

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CommandsVisitor)
    }
}

struct CommandsVisitor;

impl<'de> Visitor<'de> for CommandsVisitor {
    type Value = Commands;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a command string or a list of command strings")
    }

    fn visit_str<E: de::Error>(self, command: &str) -> Result<Commands, E> {
        Ok(Commands(vec![command.to_owned()]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Commands, A::Error> {
        let mut commands = Vec::new();
        while let Some(command) = sequence.next_element::<String>()? {
            commands.push(command);
        }
        Ok(Commands(commands))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> String {
        Flow::parse(text)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn hook_names_match_the_file_keys() {
        let names: Vec<&str> = Hook::ALL.iter().map(|hook| hook.as_str()).collect();
        assert_eq!(
            names,
            [
                "before_init",
                "after_init",
                "before_plan",
                "after_plan",
                "before_apply",
                "after_apply",
                "before_destroy",
                "after_destroy"
            ]
        );
        assert_eq!(Hook::AfterPlan.to_string(), "after_plan");
        for (index, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(hook.index(), index);
        }
    }

    #[test]
    fn parses_strings_and_lists_of_commands() {
        let flow = Flow::parse(
            "version: 1\n\
             hooks:\n  \
               before_init: \"echo one\"\n  \
               after_init:\n    - ./scripts/check.sh\n    - echo done\n  \
               after_destroy: |\n    echo multi\n    echo line\n",
        )
        .unwrap();
        assert_eq!(flow.commands(Hook::BeforeInit), ["echo one"]);
        assert_eq!(
            flow.commands(Hook::AfterInit),
            ["./scripts/check.sh", "echo done"]
        );
        assert_eq!(
            flow.commands(Hook::AfterDestroy),
            ["echo multi\necho line\n"]
        );
        assert!(flow.commands(Hook::BeforePlan).is_empty());
        assert!(!flow.is_empty());
    }

    #[test]
    fn parses_every_hook() {
        let text: String = Hook::ALL
            .iter()
            .map(|hook| format!("  {hook}: echo {hook}\n"))
            .collect();
        let flow = Flow::parse(&format!("hooks:\n{text}")).unwrap();
        for hook in Hook::ALL {
            assert_eq!(flow.commands(hook), [format!("echo {hook}")]);
        }
    }

    #[test]
    fn version_is_optional() {
        let flow = Flow::parse("hooks:\n  before_plan: make lint\n").unwrap();
        assert_eq!(flow.commands(Hook::BeforePlan), ["make lint"]);
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_flows() {
        for text in [
            "",
            "\n",
            "# nothing yet\n",
            "version: 1\n",
            "hooks:\n",
            "hooks: {}\n",
        ] {
            assert!(Flow::parse(text).unwrap().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn null_and_empty_list_hooks_run_nothing() {
        let flow = Flow::parse("hooks:\n  before_init:\n  after_init: []\n").unwrap();
        assert!(flow.is_empty());
    }

    #[test]
    fn rejects_other_versions() {
        assert_eq!(
            parse_error("version: 2\n"),
            "envplane.yml version 2 is not supported (the only version is 1)"
        );
        assert!(parse_error("version: \"one\"\n").contains("invalid envplane.yml"));
    }

    #[test]
    fn rejects_unknown_keys_naming_them() {
        let message = parse_error("hooks:\n  before_deploy: echo hi\n");
        assert!(
            message.contains("unknown field `before_deploy`"),
            "{message}"
        );
        let message = parse_error("version: 1\nsteps: []\n");
        assert!(message.contains("unknown field `steps`"), "{message}");
    }

    #[test]
    fn rejects_values_that_are_not_commands() {
        let message = parse_error("hooks:\n  before_init: 42\n");
        assert!(
            message.contains("a command string or a list of command strings"),
            "{message}"
        );
        let message = parse_error("hooks:\n  before_init: {run: echo}\n");
        assert!(
            message.contains("a command string or a list of command strings"),
            "{message}"
        );
        assert!(parse_error("hooks:\n  before_init: [[echo]]\n").contains("invalid envplane.yml"));
        let message = parse_error("hooks: [before_init]\n");
        assert!(
            message.contains("expected a map from hook names"),
            "{message}"
        );
        let message = parse_error("- echo\n");
        assert!(
            message.contains("expected a map with the keys `version` and `hooks`"),
            "{message}"
        );
    }

    #[test]
    fn rejects_invalid_yaml() {
        let message = parse_error("hooks:\n  before_init: \"unterminated\n");
        assert!(message.starts_with("invalid envplane.yml: "), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn rejects_empty_commands() {
        assert_eq!(
            parse_error("hooks:\n  after_plan: \"  \"\n"),
            "envplane.yml: hooks.after_plan: command 1 is empty"
        );
        assert_eq!(
            parse_error("hooks:\n  before_apply:\n    - echo ok\n    - \"\"\n"),
            "envplane.yml: hooks.before_apply: command 2 is empty"
        );
    }

    #[test]
    fn rejects_commands_over_8_kib() {
        let at_limit = "x".repeat(MAX_COMMAND_BYTES);
        assert!(Flow::parse(&format!("hooks:\n  before_init: {at_limit}\n")).is_ok());
        let too_long = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert_eq!(
            parse_error(&format!("hooks:\n  before_init: {too_long}\n")),
            "envplane.yml: hooks.before_init: command 1 is 8193 bytes, more than the limit of 8192 bytes (8 KiB)"
        );
    }

    #[test]
    fn rejects_commands_with_nul_bytes() {
        assert_eq!(
            parse_error("hooks:\n  before_init: \"echo \\0\"\n"),
            "envplane.yml: hooks.before_init: command 1 contains a NUL byte"
        );
    }

    #[test]
    fn rejects_text_over_256_kib() {
        let padding = "#".repeat(MAX_FILE_BYTES as usize);
        let message = parse_error(&format!("{padding}\n"));
        assert!(
            message.contains("more than the limit of 262144 bytes"),
            "{message}"
        );
    }

    #[test]
    fn load_reads_envplane_yml_in_the_template_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("envplane.yml"),
            "hooks:\n  after_apply: echo applied\n",
        )
        .unwrap();
        let flow = Flow::load(dir.path()).unwrap();
        assert_eq!(flow.commands(Hook::AfterApply), ["echo applied"]);
    }

    #[test]
    fn load_without_a_file_gives_an_empty_flow() {
        let dir = tempfile::tempdir().unwrap();
        // Only the one name counts.
        std::fs::write(
            dir.path().join("envplane.yaml"),
            "hooks:\n  after_apply: echo\n",
        )
        .unwrap();
        assert!(Flow::load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn load_refuses_files_over_256_kib() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize));
        std::fs::write(dir.path().join("envplane.yml"), text).unwrap();
        let error = Flow::load(dir.path()).unwrap_err();
        assert!(
            matches!(error, FlowError::FileTooLarge { size } if size > MAX_FILE_BYTES),
            "{error}"
        );
    }

    #[test]
    fn load_refuses_symlinks_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("secret.txt");
        std::fs::write(&elsewhere, "TOKEN=abc").unwrap();
        let template = dir.path().join("template");
        std::fs::create_dir(&template).unwrap();
        std::os::unix::fs::symlink(&elsewhere, template.join("envplane.yml")).unwrap();
        let message = Flow::load(&template).unwrap_err().to_string();
        assert!(message.contains("must be a regular file"), "{message}");
        assert!(!message.contains("TOKEN"));

        let other = dir.path().join("other");
        std::fs::create_dir_all(other.join("envplane.yml")).unwrap();
        assert!(matches!(
            Flow::load(&other),
            Err(FlowError::NotARegularFile { .. })
        ));
    }

    #[test]
    fn load_refuses_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("envplane.yml"),
            b"hooks:\n  before_init: \xff\n",
        )
        .unwrap();
        assert!(matches!(Flow::load(dir.path()), Err(FlowError::NotUtf8)));
    }
}
