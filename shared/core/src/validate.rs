//! Parse, don't validate: each input that has rules becomes a type on the way in.

use crate::{Error, Result};

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_VARIABLE_VALUE_LEN: usize = 64 * 1024;

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
/// pulled over encrypted transports. `file://` is for local mode (trying things, tests).
pub fn repository_url(value: &str, allow_file: bool) -> Result<String> {
    let value = value.trim();
    let has_host_after = |prefix: &str| {
        value
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    };
    let scp_like = value.strip_prefix("git@").is_some_and(|rest| {
        rest.split_once(':')
            .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty())
    });
    let accepted = has_host_after("https://")
        || has_host_after("ssh://")
        || scp_like
        || (allow_file
            && value
                .strip_prefix("file://")
                .is_some_and(|p| p.starts_with('/')));
    if value.len() > 2048 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid("repository must be a URL without spaces"));
    }
    if accepted {
        return Ok(value.to_string());
    }
    let allowed = if allow_file {
        "https://, ssh://, git@host:path or file:///absolute/path"
    } else {
        "https://, ssh:// or git@host:path (file:// is accepted in local mode only)"
    };
    Err(Error::invalid(format!("repository must use {allowed}")))
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
            assert_eq!(repository_url(ok, false).unwrap(), ok);
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
            assert!(repository_url(bad, true).is_err(), "{bad}");
        }
        assert!(repository_url("file:///tmp/repo", false).is_err());
        assert!(repository_url("file:///tmp/repo", true).is_ok());
        assert!(repository_url("file://relative", true).is_err());
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
