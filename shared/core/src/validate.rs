//! Parse, don't validate: each input that has rules becomes a type on the way in.

use std::path::Path;

use crate::{Error, Result};

pub const MAX_NAME_LEN: usize = 128;
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

/// A display name: 1 to 128 characters, trimmed, no control characters.
pub fn name(field: &str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{field} must be at most {MAX_NAME_LEN} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// Where a template's code lives. Plain `http://` and `git://` are refused: code is only
/// pulled over encrypted transports. `file://` is accepted only for a path inside
/// `local_repositories`, the directory an operator of local mode chose to share with
/// sandboxes (`envplane serve --local-repos`); none otherwise.
pub fn repository_url(value: &str, local_repositories: Option<&Path>) -> Result<String> {
    let value = value.trim();
    if value.len() > 2048 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid("repository must be a URL without spaces"));
    }
    if let Some(path) = value.strip_prefix("file://") {
        return local_repository(path, local_repositories).map(|_| value.to_string());
    }
    let has_host_after = |prefix: &str| {
        value
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    };
    let scp_like = value.strip_prefix("git@").is_some_and(|rest| {
        rest.split_once(':')
            .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty())
    });
    if has_host_after("https://") || has_host_after("ssh://") || scp_like {
        return Ok(value.to_string());
    }
    let allowed = if local_repositories.is_some() {
        "https://, ssh://, git@host:path or file:// under the local repositories directory"
    } else {
        "https://, ssh:// or git@host:path"
    };
    Err(Error::invalid(format!("repository must use {allowed}")))
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

/// A Git revision (branch, tag or commit). Refuses what could be read as a command flag.
pub fn revision(value: &str) -> Result<String> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 256
        && !value.starts_with('-')
        && !value.contains("..")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+@".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            "revision must be a branch, tag or commit (letters, digits and ._/-+@, not starting with -)",
        ))
    }
}

/// A relative directory inside the repository; never escapes it.
pub fn repository_path(value: &str) -> Result<String> {
    let trimmed = value.trim().trim_matches('/');
    let escapes = trimmed.split('/').any(|part| part == "..");
    if value.trim().starts_with('/') || escapes || trimmed.len() > 1024 {
        return Err(Error::invalid(
            "path must be a relative directory inside the repository",
        ));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("path must not contain control characters"));
    }
    Ok(if trimmed.is_empty() {
        ".".to_string()
    } else {
        trimmed.to_string()
    })
}

/// An exact IaC version such as `1.0.3` (release candidates like `1.6.0-rc1` allowed).
pub fn iac_version(value: &str) -> Result<String> {
    let value = value.trim();
    let (core, pre) = value.split_once('-').unwrap_or((value, ""));
    let numbers: Vec<&str> = core.split('.').collect();
    let ok = numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 4 && n.chars().all(|c| c.is_ascii_digit()))
        && pre.len() <= 32
        && pre.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            "iac_version must be an exact version such as 1.0.3",
        ))
    }
}

/// A variable name: a letter or underscore, then letters, digits, underscores (and, for
/// Terraform variables, dashes), at most 128 characters.
pub fn variable_name(value: &str, allow_dash: bool) -> Result<String> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'));
    if first_ok && rest_ok && value.len() <= MAX_NAME_LEN {
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

/// A time to live such as `30m`, `8h` or `7d`, returned in seconds (1 minute to 1 year).
pub fn ttl_seconds(value: &str) -> Result<u64> {
    let value = value.trim();
    let invalid = || Error::invalid("ttl must be a duration such as 30m, 8h or 7d");
    let unit = value.chars().last().ok_or_else(invalid)?;
    let amount: u64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| invalid())?;
    let seconds = match unit {
        'm' => amount.checked_mul(60),
        'h' => amount.checked_mul(3600),
        'd' => amount.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(invalid)?;
    if (60..=366 * 86_400).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(Error::invalid("ttl must be between 1 minute and 366 days"))
    }
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
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  web  ").unwrap(), "web");
        assert!(name("name", "").is_err());
        assert!(name("name", "a\nb").is_err());
        assert!(name("name", &"x".repeat(128)).is_ok());
        assert!(name("name", &"x".repeat(129)).is_err());
    }

    #[test]
    fn repository_urls_must_be_encrypted_transports() {
        for ok in [
            "https://github.com/acme/infra.git",
            "ssh://git@github.com/acme/infra.git",
            "git@github.com:acme/infra.git",
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
    }

    #[test]
    fn paths_stay_inside_the_repository() {
        assert_eq!(repository_path("").unwrap(), ".");
        assert_eq!(repository_path("envs/dev/").unwrap(), "envs/dev");
        assert!(repository_path("/etc").is_err());
        assert!(repository_path("a/../../b").is_err());
    }

    #[test]
    fn versions_are_exact() {
        assert!(iac_version("1.0.3").is_ok());
        assert!(iac_version("1.6.0-rc1").is_ok());
        assert!(iac_version("1.0").is_err());
        assert!(iac_version("latest").is_err());
        assert!(iac_version("1.0.3; rm -rf /").is_err());
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
        for bad in ["", "h", "0m", "10s", "999999999999999999d", "1.5h", "400d"] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
    }
}
