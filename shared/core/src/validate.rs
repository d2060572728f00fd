//! Parse, don't validate: each input that has rules becomes a type on the way in.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{Object, RefOr, Schema};

use crate::{Error, Result};

pub const MAX_NAME_LEN: usize = 128;
/// The longest project description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// The longest variable value, in characters.
pub const MAX_VARIABLE_VALUE_LEN: usize = 64 * 1024;
/// Sensitive values are masked wherever they appear in a deployment's log, so a very
/// short one would blank out ordinary text (and tell what it is by where it is).
pub const MIN_SENSITIVE_VALUE_LEN: usize = 4;

/// How long a deployment may run, in minutes, unless its environment says otherwise.
pub const DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES: u32 = 120;
/// The longest deployment timeout an environment may set: a day.
pub const MAX_DEPLOYMENT_TIMEOUT_MINUTES: u32 = 24 * 60;

/// A deployment timeout: 1 minute to a day.
pub fn deployment_timeout_minutes(value: u32) -> Result<u32> {
    if (1..=MAX_DEPLOYMENT_TIMEOUT_MINUTES).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(format!(
            "deployment_timeout_minutes must be between 1 and {MAX_DEPLOYMENT_TIMEOUT_MINUTES} (a day)"
        )))
    }
}

/// The largest monthly budget taken, in the bill's currency.
pub const MAX_MONTHLY_BUDGET: f64 = 1_000_000_000.0;

/// A monthly budget: more than nothing, at most [`MAX_MONTHLY_BUDGET`].
pub fn monthly_budget(value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 && value <= MAX_MONTHLY_BUDGET {
        Ok(value)
    } else {
        Err(Error::invalid(format!(
            "monthly_budget must be more than 0 and at most {MAX_MONTHLY_BUDGET}"
        )))
    }
}

/// A text input's rule, written once: validation matches `pattern` and counts characters
/// against `max_chars`, and the OpenAPI document publishes the same `pattern` and
/// `maxLength`, so what a generated client checks and what the API refuses cannot drift
/// apart. Patterns use only what every JSON Schema tool reads alike: no look-around,
/// `\uXXXX` escapes, `^...$` around the whole.
pub struct TextRule {
    pub pattern: &'static str,
    pub max_chars: usize,
    regex: OnceLock<Regex>,
}

impl TextRule {
    const fn new(pattern: &'static str, max_chars: usize) -> Self {
        TextRule {
            pattern,
            max_chars,
            regex: OnceLock::new(),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        let regex = self
            .regex
            .get_or_init(|| Regex::new(self.pattern).expect("a rule's pattern compiles"));
        value.chars().count() <= self.max_chars && regex.is_match(value)
    }

    /// `value`, or a 422 naming `field` and saying `rule` (what the pattern means).
    fn check(&self, field: &str, value: &str, rule: &str) -> Result<String> {
        if self.matches(value) {
            Ok(value.to_string())
        } else {
            Err(Error::invalid(format!("{field} must be {rule}")))
        }
    }

    /// The rule as a JSON Schema string.
    pub fn schema(&self) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(self.pattern))
            .max_length(Some(self.max_chars))
            .build()
    }

    /// [`Self::schema`], with `null` allowed too (an optional field of a change).
    pub fn nullable_schema(&self) -> RefOr<Schema> {
        let mut schema = self.schema();
        schema.schema_type = SchemaType::Array(vec![Type::String, Type::Null]);
        schema.into()
    }
}

/// One character class of everything but control characters (`char::is_control`), the
/// given characters, and, with `visible_except!`, white space (`char::is_whitespace`).
macro_rules! printable_except {
    ($extra:literal) => {
        concat!("[^", $extra, r"\u0000-\u001F\u007F-\u009F]")
    };
}
macro_rules! visible_except {
    ($extra:literal) => {
        concat!(
            "[^",
            $extra,
            r"\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )
    };
}
/// A path component other than `..`.
macro_rules! path_component {
    () => {
        concat!(
            "(?:",
            printable_except!("/."),
            printable_except!("/"),
            r"*|\.(?:",
            printable_except!("/."),
            printable_except!("/"),
            r"*)?|\.\.",
            printable_except!("/"),
            "+)"
        )
    };
}

/// A display name: 1 to 128 characters, no control characters, neither starting nor
/// ending with white space.
pub static NAME: TextRule = TextRule::new(
    concat!(
        "^",
        visible_except!(""),
        "(?:",
        printable_except!(""),
        "*",
        visible_except!(""),
        ")?$"
    ),
    MAX_NAME_LEN,
);

/// A branch, tag or commit: letters, digits and `_/+@-`, single dots between them; never
/// starting with `-` (a command flag) or `.`, never `..`.
pub static REVISION: TextRule = TextRule::new(r"^[A-Za-z0-9_/+@](?:\.?[A-Za-z0-9_/+@-])*$", 256);

/// A host name or IPv4 address, as a repository URL names it.
macro_rules! host {
    () => {
        r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
    };
}

/// `https://` or `ssh://` with a host (a user name and a port allowed, a password not:
/// credentials go in `ENVPLANE_GIT_TOKEN`), or `git@host:path`; no white space or control
/// characters anywhere.
pub static REPOSITORY: TextRule = TextRule::new(
    concat!(
        r"^(?:(?:https|ssh)://(?:[A-Za-z0-9._~-]+@)?",
        host!(),
        r"(?::[0-9]{1,5})?(?:/",
        visible_except!(""),
        "*)?|git@",
        host!(),
        ":",
        visible_except!(""),
        "+)$"
    ),
    2048,
);

/// A relative directory inside the repository: no leading `/`, no `..` component, no
/// control characters; empty for the root.
pub static REPOSITORY_PATH: TextRule = TextRule::new(
    concat!(
        "^(?:",
        path_component!(),
        "(?:/+",
        path_component!(),
        ")*/*)?$"
    ),
    1024,
);

/// An exact version such as `1.0.3` or `1.6.0-rc1`.
pub static IAC_VERSION: TextRule = TextRule::new(
    r"^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(?:-[A-Za-z0-9.]{1,32})?$",
    47,
);

/// A Terraform variable's name; an environment variable's has no `-`.
pub static VARIABLE_NAME: TextRule = TextRule::new(r"^[A-Za-z_][A-Za-z0-9_-]*$", MAX_NAME_LEN);
static ENVIRONMENT_VARIABLE_NAME: TextRule =
    TextRule::new(r"^[A-Za-z_][A-Za-z0-9_]*$", MAX_NAME_LEN);

/// A time to live: 1 to 999 minutes or hours (`30m`, `8h`), or 1 to 366 days (`7d`).
pub static TTL: TextRule = TextRule::new(
    r"^(?:[1-9][0-9]{0,2}[mh]|(?:[1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$",
    4,
);

/// A watched path glob: path segments of letters, digits, `._-`, `?` and single `*`s,
/// or a whole segment `**` (any depth); from the repository root.
pub static WATCH_PATH: TextRule = TextRule::new(
    concat!(
        r"^(?:\*\*|\*|\*?(?:[A-Za-z0-9._?-]+\*?)+)",
        r"(?:/(?:\*\*|\*|\*?(?:[A-Za-z0-9._?-]+\*?)+))*$"
    ),
    200,
);
/// Extra path globs one environment may watch.
pub const MAX_WATCH_PATHS: usize = 20;

/// An environment's extra watched paths: at most [`MAX_WATCH_PATHS`] [`WATCH_PATH`]s.
pub fn watch_paths(globs: Vec<String>) -> Result<Vec<String>> {
    if globs.len() > MAX_WATCH_PATHS {
        return Err(Error::invalid(format!(
            "watch_paths takes at most {MAX_WATCH_PATHS} globs"
        )));
    }
    for glob in &globs {
        WATCH_PATH.check(
            "each of watch_paths",
            glob,
            "a glob of path segments (letters, digits, ._-, ? and single *s, or a whole \
             segment **), at most 200 characters",
        )?;
    }
    Ok(globs)
}

/// A listing's position: the `next` of the page before.
pub static CURSOR: TextRule = TextRule::new(r"^[A-Za-z0-9_/-]+$", 512);

/// A listing's cursor, as the store takes it.
pub fn cursor(value: &str) -> Result<String> {
    CURSOR.check(
        "cursor",
        value,
        "the `next` of a previous page (letters, digits and _/-)",
    )
}

/// A display name (see [`NAME`]).
pub fn name(field: &str, value: &str) -> Result<String> {
    NAME.check(
        field,
        value,
        &format!(
            "1 to {MAX_NAME_LEN} characters without control characters, not starting or \
             ending with white space"
        ),
    )
}

/// Where a template's code lives. Plain `http://` and `git://` are refused: code is only
/// pulled over encrypted transports. `file://` is accepted only for a path inside
/// `local_repositories`, the directory an operator of local mode chose to share with
/// sandboxes (`envplane serve --local-repos`); none otherwise.
pub fn repository_url(value: &str, local_repositories: Option<&Path>) -> Result<String> {
    if let Some(path) = value.strip_prefix("file://") {
        return local_repository(path, local_repositories).map(|_| value.to_string());
    }
    if REPOSITORY.matches(value) {
        return Ok(value.to_string());
    }
    let allowed = if local_repositories.is_some() {
        "https://, ssh://, git@host:path or file:// under the local repositories directory"
    } else {
        "https://, ssh:// or git@host:path"
    };
    Err(Error::invalid(format!(
        "repository must use {allowed}, name its host by name or IPv4 address, hold no \
         password (use ENVPLANE_GIT_TOKEN) and no spaces, at most {} characters",
        REPOSITORY.max_chars
    )))
}

/// A `file://` repository's path: absolute, without `.` or `..` parts, inside `root`.
/// (The launcher resolves symbolic links again before it shares the directory.)
pub fn local_repository<'a>(path: &'a str, root: Option<&Path>) -> Result<&'a Path> {
    let Some(root) = root else {
        return Err(Error::invalid(
            "file:// repositories are accepted only when the operator shares a directory \
             of local repositories (envplane serve --local-repos DIR)",
        ));
    };
    let plain = path.starts_with('/') && !path.split('/').any(|part| part == "." || part == "..");
    let path = Path::new(path);
    if plain && path.starts_with(root) && path != root {
        Ok(path)
    } else {
        Err(Error::invalid(format!(
            "a file:// repository must be an absolute path without . or .. inside {}",
            root.display()
        )))
    }
}

/// A Git revision (see [`REVISION`]). Refuses what could be read as a command flag.
pub fn revision(value: &str) -> Result<String> {
    REVISION.check(
        "revision",
        value,
        "a branch, tag or commit (letters, digits and _/+@-, single dots between them, not \
         starting with - or .), at most 256 characters",
    )
}

/// A relative directory inside the repository (see [`REPOSITORY_PATH`]); never escapes
/// it. Trailing slashes go; the root is `.`.
pub fn repository_path(value: &str) -> Result<String> {
    let path = REPOSITORY_PATH.check(
        "path",
        value,
        "a relative directory inside the repository (no leading /, no .., no control \
         characters), at most 1024 characters",
    )?;
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        ".".to_string()
    } else {
        trimmed.to_string()
    })
}

/// An exact IaC version such as `1.0.3` (release candidates like `1.6.0-rc1` allowed).
pub fn iac_version(value: &str) -> Result<String> {
    IAC_VERSION.check(
        "iac_version",
        value,
        "an exact version such as 1.0.3 or 1.6.0-rc1",
    )
}

/// A variable name: a letter or underscore, then letters, digits, underscores (and, for
/// Terraform variables, dashes), at most 128 characters.
pub fn variable_name(value: &str, allow_dash: bool) -> Result<String> {
    let rule = if allow_dash {
        &VARIABLE_NAME
    } else {
        &ENVIRONMENT_VARIABLE_NAME
    };
    if rule.matches(value) {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(format!(
            "variable name {:?} must start with a letter or _, hold only letters, digits, _{} and be at most {MAX_NAME_LEN} characters",
            truncate(value, 40),
            if allow_dash { " and -" } else { "" }
        )))
    }
}

/// Variables with these names configure the clone (the runner reads them itself) and
/// reach neither hooks nor Terraform.
pub const GIT_TOKEN_VARIABLE: &str = "ENVPLANE_GIT_TOKEN";
pub const GIT_SSH_KEY_VARIABLE: &str = "ENVPLANE_GIT_SSH_KEY";
pub const CLONE_CREDENTIAL_VARIABLES: [&str; 2] = [GIT_TOKEN_VARIABLE, GIT_SSH_KEY_VARIABLE];
/// SSH host keys (known_hosts lines) trusted for the clone, instead of the built-in
/// ones of github.com, gitlab.com and bitbucket.org. Not a secret, never masked.
pub const GIT_KNOWN_HOSTS_VARIABLE: &str = "ENVPLANE_GIT_KNOWN_HOSTS";
/// Every variable that configures the clone and reaches neither hooks nor Terraform.
pub const CLONE_VARIABLES: [&str; 3] = [
    GIT_TOKEN_VARIABLE,
    GIT_SSH_KEY_VARIABLE,
    GIT_KNOWN_HOSTS_VARIABLE,
];

/// Environment variables that would let whoever sets a variable take over the runner,
/// Terraform or Git (a loader preload, a CLI flag, a proxy with its own CA, the state
/// backend's credentials), and why. `*` ends a prefix.
const RESERVED_ENVIRONMENT_NAMES: [(&str, &str); 20] = [
    ("PATH", "chooses which programs run"),
    ("HOME", "chooses which configuration files are read"),
    ("LD_*", "loads code into every program"),
    ("BASH_ENV", "runs a script before every shell"),
    ("ENV", "runs a script before every shell"),
    (
        "TF_LOG*",
        "makes providers log request bodies, secrets included",
    ),
    (
        "TF_CLI_*",
        "adds arguments or configuration to every Terraform command",
    ),
    (
        "TF_HTTP_*",
        "overrides the state backend and its credentials",
    ),
    ("TF_DATA_DIR", "moves Terraform's working data"),
    ("TF_PLUGIN*", "chooses which provider binaries run"),
    (
        "TF_WORKSPACE",
        "switches the Terraform workspace under the platform's state",
    ),
    ("GIT_*", "changes how repositories are fetched"),
    ("SSH_*", "changes how repositories are fetched"),
    ("SSL_CERT_*", "replaces the trusted certificate authorities"),
    (
        "CURL_CA_BUNDLE",
        "replaces the trusted certificate authorities",
    ),
    (
        "REQUESTS_CA_BUNDLE",
        "replaces the trusted certificate authorities",
    ),
    (
        "NODE_EXTRA_CA_CERTS",
        "replaces the trusted certificate authorities",
    ),
    ("ENVPLANE_*", "is the platform's own"),
    ("*_PROXY", "sends traffic through another host"),
    (
        "TMPDIR",
        "moves temporary files out of the sandbox's work directory",
    ),
];

/// The reserved names, as a list for people (`*` stands for any text).
pub fn reserved_environment_names() -> String {
    let names: Vec<&str> = RESERVED_ENVIRONMENT_NAMES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    format!(
        "{}, except {}",
        names.join(", "),
        CLONE_VARIABLES.join(", ")
    )
}

/// Why an environment variable of this name is refused, if it is: one of
/// [`RESERVED_ENVIRONMENT_NAMES`], except the documented clone credentials. Proxy names
/// count in any case (`https_proxy` is read too).
pub fn reserved_environment_name(name: &str) -> Option<String> {
    if CLONE_VARIABLES.contains(&name) {
        return None;
    }
    RESERVED_ENVIRONMENT_NAMES
        .iter()
        .find(|(pattern, _)| {
            if let Some(suffix) = pattern.strip_prefix('*') {
                name.to_ascii_uppercase().ends_with(suffix)
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                name.starts_with(prefix)
            } else {
                name == *pattern
            }
        })
        .map(|(pattern, why)| format!("the name {pattern} is reserved: it {why}"))
}

/// A name for a variable of kind `env`: a valid variable name that is not reserved.
pub fn environment_variable_name(value: &str) -> Result<String> {
    let name = variable_name(value, false)?;
    match reserved_environment_name(&name) {
        Some(rule) => Err(Error::invalid(format!(
            "environment variable {name:?} cannot be set: {rule}"
        ))),
        None => Ok(name),
    }
}

/// The longest time to live, in days.
pub const MAX_TTL_DAYS: i64 = 366;

/// An explicit end of a time to live: after `now`, within [`MAX_TTL_DAYS`].
pub fn expiry_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if at <= now || at > now + chrono::Duration::days(MAX_TTL_DAYS) {
        return Err(Error::invalid(format!(
            "expires_at must be in the future and within {MAX_TTL_DAYS} days"
        )));
    }
    Ok(at)
}

/// A time to live (see [`TTL`]), in seconds.
pub fn ttl_seconds(value: &str) -> Result<u64> {
    if !TTL.matches(value) {
        return Err(Error::invalid(
            "ttl must be 1 to 999 minutes or hours, or 1 to 366 days, such as 30m, 8h or 7d",
        ));
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().expect("the pattern admits digits only");
    Ok(amount
        * match unit {
            "m" => 60,
            "h" => 3600,
            _ => 86_400,
        })
}

fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_hijack_the_runner_are_refused() {
        for name in [
            "PATH",
            "HOME",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "TF_LOG",
            "TF_LOG_PROVIDER",
            "TF_CLI_ARGS",
            "TF_CLI_ARGS_plan",
            "TF_CLI_CONFIG_FILE",
            "TF_HTTP_ADDRESS",
            "TF_HTTP_PASSWORD",
            "TF_DATA_DIR",
            "TF_PLUGIN_CACHE_DIR",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_GLOBAL",
            "SSH_AUTH_SOCK",
            "HTTPS_PROXY",
            "https_proxy",
            "All_Proxy",
            "NO_PROXY",
            "SSL_CERT_FILE",
            "CURL_CA_BUNDLE",
            "ENVPLANE_RUNNER_TOKEN",
            "ENVPLANE_API_URL",
            "BASH_ENV",
            "TMPDIR",
        ] {
            let message = environment_variable_name(name).unwrap_err().to_string();
            assert!(message.contains("reserved"), "{name}: {message}");
        }
        for name in [
            "ENVPLANE_GIT_TOKEN",
            "ENVPLANE_GIT_SSH_KEY",
            "ENVPLANE_GIT_KNOWN_HOSTS",
            "AWS_REGION",
            "TF_VAR_x",
            "TF_TOKEN_app_terraform_io",
            "path_prefix",
            "HOMEPAGE",
            "PROXY_HOST",
            "tf_log",
        ] {
            assert_eq!(environment_variable_name(name).unwrap(), name);
        }
        assert!(environment_variable_name("A=B").is_err());
        assert!(environment_variable_name("1A").is_err());
    }

    #[test]
    fn names_are_bounded_and_not_padded() {
        assert_eq!(name("name", "web app").unwrap(), "web app");
        assert_eq!(name("name", "é").unwrap(), "é");
        for bad in [
            "",
            " web",
            "web ",
            "web\u{a0}",
            "a\nb",
            "a\u{85}b",
            "\u{3000}x",
        ] {
            assert!(name("name", bad).is_err(), "{bad:?}");
        }
        assert!(name("name", &"x".repeat(128)).is_ok());
        assert!(name("name", &"é".repeat(128)).is_ok());
        assert!(name("name", &"x".repeat(129)).is_err());
    }

    #[test]
    fn repository_urls_must_be_encrypted_transports() {
        for ok in [
            "https://github.com/acme/infra.git",
            "ssh://git@github.com/acme/infra.git",
            "git@github.com:acme/infra.git",
            "https://git.example.com:8443/acme/infra",
            "https://ci-bot@github.com/acme/infra.git",
            "ssh://git@10.1.2.3:2222/infra",
            "https://github.com",
        ] {
            assert_eq!(repository_url(ok, None).unwrap(), ok);
        }
        for bad in [
            "http://github.com/acme/infra",
            "git://github.com/acme/infra",
            "https://",
            "https:///x",
            "git@:x",
            "ftp://x",
            "/tmp/repo",
            "https://x/ y",
            "https://[::1]/x",
            "https://[x",
            "https://user:token@github.com/acme/infra.git",
            "https://-host/x",
            "git@ho st:x",
        ] {
            assert!(
                repository_url(bad, Some(Path::new("/srv/repos"))).is_err(),
                "{bad}"
            );
        }
        let root = Some(Path::new("/srv/repos"));
        assert!(repository_url("file:///srv/repos/infra", None).is_err());
        assert!(repository_url("file:///srv/repos/infra", root).is_ok());
        for outside in [
            "file://relative",
            "file:///srv/repos",
            "file:///srv/repos-other/x",
            "file:///srv/repos/../secrets",
            "file:///srv/repos/./x",
            "file:///etc",
        ] {
            assert!(repository_url(outside, root).is_err(), "{outside}");
        }
    }

    #[test]
    fn revisions_cannot_be_flags() {
        assert!(revision("main").is_ok());
        assert!(revision("v1.2.3").is_ok());
        assert!(revision("feature/x").is_ok());
        assert!(revision("-c core.sshCommand=evil").is_err());
        assert!(revision("--upload-pack=x").is_err());
        assert!(revision("a..b").is_err());
        assert!(revision("").is_err());
        assert!(revision(".hidden").is_err());
        assert!(revision(" main").is_err());
        assert!(revision("a.b.c").is_ok());
    }

    #[test]
    fn paths_stay_inside_the_repository() {
        assert_eq!(repository_path("").unwrap(), ".");
        assert_eq!(repository_path("envs/dev/").unwrap(), "envs/dev");
        assert!(repository_path("/etc").is_err());
        assert!(repository_path("a/../../b").is_err());
        assert!(repository_path("..").is_err());
        assert_eq!(repository_path("./x/..y/.../z").unwrap(), "./x/..y/.../z");
        assert_eq!(repository_path("a//b/").unwrap(), "a//b");
        assert!(repository_path("a\tb").is_err());
    }

    #[test]
    fn versions_are_exact() {
        assert!(iac_version("1.0.3").is_ok());
        assert!(iac_version("1.6.0-rc1").is_ok());
        assert!(iac_version("1.0").is_err());
        assert!(iac_version("latest").is_err());
        assert!(iac_version("1.0.3; rm -rf /").is_err());
        assert!(iac_version("1.0.3-").is_err());
        assert!(iac_version(" 1.0.3").is_err());
    }

    #[test]
    fn variable_names_follow_the_kind() {
        assert!(variable_name("region", true).is_ok());
        assert!(variable_name("my-var", true).is_ok());
        assert!(variable_name("my-var", false).is_err());
        assert!(variable_name("AWS_REGION", false).is_ok());
        assert!(variable_name("1abc", true).is_err());
        assert!(variable_name("", true).is_err());
        assert!(variable_name("a b", true).is_err());
    }

    #[test]
    fn ttls_parse_units() {
        assert_eq!(ttl_seconds("30m").unwrap(), 1800);
        assert_eq!(ttl_seconds("8h").unwrap(), 28_800);
        assert_eq!(ttl_seconds("7d").unwrap(), 604_800);
        assert_eq!(ttl_seconds("999h").unwrap(), 999 * 3600);
        assert_eq!(ttl_seconds("366d").unwrap(), 366 * 86_400);
        for bad in [
            "", "h", "0m", "07m", "10s", "1000m", "367d", "400d", "1.5h", " 8h", "8h\n",
        ] {
            assert!(ttl_seconds(bad).is_err(), "{bad:?}");
        }
    }

    /// The day bound is written out digit by digit in the pattern: every number agrees.
    #[test]
    fn the_ttl_pattern_admits_exactly_1_to_366_days() {
        for days in 0..2000 {
            assert_eq!(
                TTL.matches(&format!("{days}d")),
                (1..=366).contains(&days),
                "{days}"
            );
        }
    }

    #[test]
    fn every_rule_compiles_and_bounds_its_length() {
        for rule in [
            &NAME,
            &REVISION,
            &REPOSITORY,
            &REPOSITORY_PATH,
            &IAC_VERSION,
            &VARIABLE_NAME,
            &ENVIRONMENT_VARIABLE_NAME,
            &TTL,
            &WATCH_PATH,
            &CURSOR,
        ] {
            assert!(
                !rule.matches(&"a".repeat(rule.max_chars + 1)),
                "{}",
                rule.pattern
            );
        }
    }
}
