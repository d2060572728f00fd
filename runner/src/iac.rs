//! Resolving the Terraform binary for the exact version a deployment asks for.
//!
//! Order: the operator's tools directory, then `terraform` on PATH (only if it reports
//! exactly that version), then a binary downloaded earlier into the download directory,
//! then (if allowed) a fresh download from the release server, verified against the
//! release's SHA256SUMS, whose OpenPGP signature by the release key is checked first,
//! before it is unpacked.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::release_signature::{ReleaseKeys, SignatureError, SignedFiles};

/// Where HashiCorp publishes Terraform releases.
pub const DEFAULT_RELEASE_BASE_URL: &str = "https://releases.hashicorp.com";

const BINARY_NAME: &str = "terraform";
const DEFAULT_VERSION_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Generous caps (a release zip is ~30 MB, the binary ~90 MB) that stop a broken
/// or hostile mirror from filling the sandbox's disk.
const MAX_SUMS_BYTES: u64 = 1024 * 1024;
const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;
const MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;
const MAX_BINARY_BYTES: u64 = 1024 * 1024 * 1024;
const MAX_VERSION_LEN: usize = 64;
/// Linux's "Text file busy": exec raced with another thread's fork while the
/// binary was open for writing; trying again shortly after succeeds.
const ETXTBSY: i32 = 26;

/// How and where to look for Terraform.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Operator-provided binaries, laid out as `<tools_dir>/terraform/<version>/terraform`.
    pub tools_dir: Option<PathBuf>,
    /// Whether a missing version may be downloaded from `release_base_url`.
    pub allow_download: bool,
    /// Downloads land in `<download_dir>/terraform/<version>/terraform`.
    pub download_dir: PathBuf,
    /// Release server root, `https://releases.hashicorp.com` by default.
    pub release_base_url: String,
    /// Release platform names as HashiCorp spells them (`linux`, `amd64`, `arm64`).
    pub os: String,
    pub arch: String,
    /// Directories searched for `terraform`, in PATH syntax; `None` uses this
    /// process's PATH. Relative entries are skipped (they would point into the repo).
    pub search_path: Option<OsString>,
    /// How long `terraform version -json` may take before the binary is ignored.
    pub version_timeout: Duration,
    /// Who must have signed a downloaded release's SHA256SUMS.
    pub release_keys: ReleaseKeys,
}

impl ResolveOptions {
    /// Options for the machine this runs on, with downloads allowed and signed by
    /// HashiCorp's release key.
    pub fn for_this_machine(
        tools_dir: Option<PathBuf>,
        download_dir: PathBuf,
    ) -> Result<Self, ResolveError> {
        Ok(Self {
            tools_dir,
            allow_download: true,
            download_dir,
            release_base_url: DEFAULT_RELEASE_BASE_URL.to_owned(),
            os: release_os_name(std::env::consts::OS).to_owned(),
            arch: release_arch_name(std::env::consts::ARCH).to_owned(),
            search_path: None,
            version_timeout: DEFAULT_VERSION_TIMEOUT,
            release_keys: ReleaseKeys::hashicorp()?,
        })
    }
}

fn release_os_name(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "darwin",
        other => other,
    }
}

fn release_arch_name(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Why no Terraform binary could be provided; every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid Terraform version {0:?}: expected MAJOR.MINOR.PATCH with an optional -prerelease, such as 1.6.0 or 1.6.0-rc1")]
    InvalidVersion(String),
    #[error(
        "invalid release platform {os:?}/{arch:?}: expected lowercase names such as linux/amd64"
    )]
    InvalidPlatform { os: String, arch: String },
    #[error(
        "Terraform {version} is not installed (looked in {looked_in}) and downloads are disabled"
    )]
    NotInstalled { version: String, looked_in: String },
    #[error("Terraform release not found (HTTP {status}): {url}")]
    ReleaseNotFound { url: String, status: u16 },
    #[error("downloading {url} failed (HTTP {status})")]
    HttpStatus { url: String, status: u16 },
    #[error("could not download {url}: {source}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not set up the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("{url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("no checksum for {file} in {sums_file}")]
    ChecksumMissing { file: String, sums_file: String },
    #[error("checksum mismatch for {file}")]
    ChecksumMismatch { file: String },
    #[error("{file} does not contain a `terraform` binary")]
    BinaryMissing { file: String },
    #[error("the `terraform` binary in {file} is larger than the limit of {limit} bytes")]
    BinaryTooLarge { file: String, limit: u64 },
    #[error("could not read {file}: {source}")]
    Archive {
        file: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the download task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A Terraform version that is safe to put into a path or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformVersion(String);

impl TerraformVersion {
    /// Accepts `MAJOR.MINOR.PATCH` with an optional `-prerelease` of `[a-z0-9.]`.
    pub fn parse(text: &str) -> Result<Self, ResolveError> {
        let (release, prerelease) = match text.split_once('-') {
            Some((release, prerelease)) => (release, Some(prerelease)),
            None => (text, None),
        };
        let valid = text.len() <= MAX_VERSION_LEN
            && is_three_numbers(release)
            && prerelease.is_none_or(is_prerelease);
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(ResolveError::InvalidVersion(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_three_numbers(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3 && parts.iter().all(|part| is_digits(part))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Dot-separated, non-empty identifiers of lowercase letters and digits.
fn is_prerelease(text: &str) -> bool {
    text.split('.').all(|identifier| {
        !identifier.is_empty()
            && identifier
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The file names and URLs of one release for one platform.
#[derive(Debug)]
struct Release<'a> {
    version: &'a TerraformVersion,
    os: &'a str,
    arch: &'a str,
}

impl<'a> Release<'a> {
    fn new(
        version: &'a TerraformVersion,
        os: &'a str,
        arch: &'a str,
    ) -> Result<Self, ResolveError> {
        if is_platform_name(os) && is_platform_name(arch) {
            Ok(Self { version, os, arch })
        } else {
            Err(ResolveError::InvalidPlatform {
                os: os.to_owned(),
                arch: arch.to_owned(),
            })
        }
    }

    fn archive_name(&self) -> String {
        format!(
            "terraform_{}_{}_{}.zip",
            self.version.as_str(),
            self.os,
            self.arch
        )
    }

    fn sums_name(&self) -> String {
        format!("terraform_{}_SHA256SUMS", self.version.as_str())
    }

    /// HashiCorp's detached binary signature of the SHA256SUMS.
    fn signature_name(&self) -> String {
        format!("{}.sig", self.sums_name())
    }

    fn url(&self, base_url: &str, file_name: &str) -> String {
        let base_url = base_url.trim_end_matches('/');
        format!("{base_url}/terraform/{}/{file_name}", self.version.as_str())
    }
}

fn is_platform_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Returns the path of a `terraform` binary that is exactly `version`.
pub async fn resolve_terraform(
    version: &str,
    options: &ResolveOptions,
) -> Result<PathBuf, ResolveError> {
    let version = TerraformVersion::parse(version)?;
    if let Some(installed) = find_installed(&version, options).await {
        return Ok(installed);
    }
    if !options.allow_download {
        return Err(not_installed(&version, options));
    }
    let target = versioned_dir(&options.download_dir, &version).join(BINARY_NAME);
    download_release(&version, options, &target).await?;
    Ok(target)
}

/// Looks in the tools dir, on PATH and among earlier downloads, in that order.
async fn find_installed(version: &TerraformVersion, options: &ResolveOptions) -> Option<PathBuf> {
    if let Some(tools_dir) = &options.tools_dir {
        let provided = versioned_dir(tools_dir, version).join(BINARY_NAME);
        if is_executable_file(&provided) {
            return Some(provided);
        }
    }
    let search_path = options
        .search_path
        .clone()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    if let Some(found) = find_on_path(version, &search_path, options.version_timeout).await {
        return Some(found);
    }
    // Only verified binaries are ever renamed into place, so an earlier download is reusable.
    let downloaded = versioned_dir(&options.download_dir, version).join(BINARY_NAME);
    is_executable_file(&downloaded).then_some(downloaded)
}

/// `<root>/terraform/<version>`: where one version's binary lives.
fn versioned_dir(root: &Path, version: &TerraformVersion) -> PathBuf {
    root.join(BINARY_NAME).join(version.as_str())
}

fn not_installed(version: &TerraformVersion, options: &ResolveOptions) -> ResolveError {
    let tools_dir = options.tools_dir.as_deref();
    let looked_in: Vec<String> = tools_dir
        .map(|dir| versioned_dir(dir, version).display().to_string())
        .into_iter()
        .chain(["PATH".to_owned()])
        .chain([versioned_dir(&options.download_dir, version)
            .display()
            .to_string()])
        .collect();
    ResolveError::NotInstalled {
        version: version.as_str().to_owned(),
        looked_in: looked_in.join(", "),
    }
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The absolute directories of a PATH value. Relative entries (and empty ones, which
/// mean the working directory) are dropped: they would point into the repository.
fn absolute_dirs(search_path: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .collect()
}

/// The first `terraform` on `search_path` that reports exactly `version`.
async fn find_on_path(
    version: &TerraformVersion,
    search_path: &OsStr,
    timeout: Duration,
) -> Option<PathBuf> {
    for dir in absolute_dirs(search_path) {
        let candidate = dir.join(BINARY_NAME);
        if !is_executable_file(&candidate) {
            continue;
        }
        if reported_version(&candidate, timeout).await.as_deref() == Some(version.as_str()) {
            return Some(candidate);
        }
    }
    None
}

/// What `terraform version -json` says, or `None` for anything that is not a
/// timely, successful, well-formed answer (old versions without `-json` included).
async fn reported_version(binary: &Path, timeout: Duration) -> Option<String> {
    #[derive(Deserialize)]
    struct VersionOutput {
        terraform_version: String,
    }
    let output = tokio::time::timeout(timeout, run_version_command(binary))
        .await
        .ok()?
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let parsed: VersionOutput = serde_json::from_slice(&output.stdout).ok()?;
    Some(parsed.terraform_version)
}

async fn run_version_command(binary: &Path) -> io::Result<std::process::Output> {
    let mut attempts_left = 5;
    loop {
        let result = Command::new(binary)
            .args(["version", "-json"])
            .env("CHECKPOINT_DISABLE", "1") // no update check over the network
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true) // the timeout drops the future: do not leave it running
            .output()
            .await;
        match result {
            Err(error) if error.raw_os_error() == Some(ETXTBSY) && attempts_left > 0 => {
                attempts_left -= 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Downloads, verifies and unpacks the release into `target`.
async fn download_release(
    version: &TerraformVersion,
    options: &ResolveOptions,
    target: &Path,
) -> Result<(), ResolveError> {
    let release = Release::new(version, &options.os, &options.arch)?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(ResolveError::HttpClient)?;
    let archive_name = release.archive_name();
    let sums_name = release.sums_name();

    let sums_url = release.url(&options.release_base_url, &sums_name);
    let sums = fetch_small(&client, &sums_url, MAX_SUMS_BYTES).await?;
    let signature_name = release.signature_name();
    let signature_url = release.url(&options.release_base_url, &signature_name);
    let signature = fetch_small(&client, &signature_url, MAX_SIGNATURE_BYTES).await?;
    let names = SignedFiles {
        signed: &sums_name,
        signature_file: &signature_name,
    };
    options.release_keys.verify(&sums, &signature, names)?;
    let expected =
        expected_sha256(&String::from_utf8_lossy(&sums), &archive_name).ok_or_else(|| {
            ResolveError::ChecksumMissing {
                file: archive_name.clone(),
                sums_file: sums_name,
            }
        })?;

    let install_dir = parent_dir(target);
    create_dir(install_dir)?;
    let archive_url = release.url(&options.release_base_url, &archive_name);
    let (archive, actual) = download_to_temp_file(&client, &archive_url, install_dir).await?;
    verify_checksum(&archive_name, &expected, &actual)?;

    let target = target.to_owned();
    tokio::task::spawn_blocking(move || install_binary_from_zip(archive, &archive_name, &target))
        .await
        .map_err(ResolveError::Task)?
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn create_dir(dir: &Path) -> Result<(), ResolveError> {
    std::fs::create_dir_all(dir).map_err(|source| ResolveError::Io {
        action: "create",
        path: dir.to_owned(),
        source,
    })
}

async fn get(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, ResolveError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|source| ResolveError::Network {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else if status == reqwest::StatusCode::NOT_FOUND {
        Err(ResolveError::ReleaseNotFound {
            url: url.to_owned(),
            status: status.as_u16(),
        })
    } else {
        Err(ResolveError::HttpStatus {
            url: url.to_owned(),
            status: status.as_u16(),
        })
    }
}

fn network_error(url: &str) -> impl FnOnce(reqwest::Error) -> ResolveError + '_ {
    move |source| ResolveError::Network {
        url: url.to_owned(),
        source,
    }
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ResolveError + 'a {
    move |source| ResolveError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn ensure_within(size: u64, limit: u64, url: &str) -> Result<(), ResolveError> {
    if size > limit {
        return Err(ResolveError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(())
}

/// Fetches a small document (such as SHA256SUMS) into memory.
async fn fetch_small(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, ResolveError> {
    let mut response = get(client, url).await?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network_error(url))? {
        body.extend_from_slice(&chunk);
        ensure_within(body.len() as u64, limit, url)?;
    }
    Ok(body)
}

/// Streams `url` into an anonymous temporary file in `dir`, hashing it on the way.
async fn download_to_temp_file(
    client: &reqwest::Client,
    url: &str,
    dir: &Path,
) -> Result<(File, [u8; 32]), ResolveError> {
    let mut response = get(client, url).await?;
    let temp = tempfile::tempfile_in(dir).map_err(io_error("create a temporary file in", dir))?;
    let mut file = tokio::fs::File::from_std(temp);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(network_error(url))? {
        size += chunk.len() as u64;
        ensure_within(size, MAX_ARCHIVE_BYTES, url)?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io_error("write the download into", dir))?;
    }
    file.flush()
        .await
        .map_err(io_error("write the download into", dir))?;
    Ok((file.into_std().await, hasher.finalize().into()))
}

/// The SHA-256 listed for exactly `file_name` in a SHA256SUMS document
/// (`<hex digest>  <file name>` per line, `*` marking binary mode).
fn expected_sha256(sums: &str, file_name: &str) -> Option<[u8; 32]> {
    sums.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (digest, name) = (fields.next()?, fields.next()?);
        let name = name.strip_prefix('*').unwrap_or(name);
        if name != file_name || fields.next().is_some() {
            return None;
        }
        let mut parsed = [0u8; 32];
        hex::decode_to_slice(digest, &mut parsed).ok()?;
        Some(parsed)
    })
}

fn verify_checksum(
    file_name: &str,
    expected: &[u8; 32],
    actual: &[u8; 32],
) -> Result<(), ResolveError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ResolveError::ChecksumMismatch {
            file: file_name.to_owned(),
        })
    }
}

/// Unpacks the `terraform` entry of a verified release zip to `target`, mode 0755.
/// It is staged in a temporary file beside `target` and renamed into place, so a
/// crash never leaves a half-written binary where the next run would trust it.
fn install_binary_from_zip(
    archive: File,
    archive_name: &str,
    target: &Path,
) -> Result<(), ResolveError> {
    let archive_error = |source| ResolveError::Archive {
        file: archive_name.to_owned(),
        source,
    };
    let binary_missing = || ResolveError::BinaryMissing {
        file: archive_name.to_owned(),
    };
    let mut zip = zip::ZipArchive::new(archive).map_err(archive_error)?;
    let mut entry = match zip.by_name(BINARY_NAME) {
        Ok(entry) if entry.is_file() => entry,
        Ok(_) | Err(zip::result::ZipError::FileNotFound) => return Err(binary_missing()),
        Err(source) => return Err(archive_error(source)),
    };

    let dir = parent_dir(target);
    let mut staged = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_error("create a temporary file in", dir))?;
    let copied = io::copy(
        &mut (&mut entry).take(MAX_BINARY_BYTES + 1),
        staged.as_file_mut(),
    )
    .map_err(io_error("unpack terraform into", dir))?;
    if copied > MAX_BINARY_BYTES {
        return Err(ResolveError::BinaryTooLarge {
            file: archive_name.to_owned(),
            limit: MAX_BINARY_BYTES,
        });
    }
    let staged_file = staged.as_file();
    staged_file
        .set_permissions(Permissions::from_mode(0o755))
        .map_err(io_error("make executable", staged.path()))?;
    staged_file
        .sync_all()
        .map_err(io_error("write", staged.path()))?;
    staged
        .persist(target)
        .map_err(|error| io_error("move the unpacked binary to", target)(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release_signature::tests::{public_keys, sign, test_signer};
    use pgp::composed::SignedSecretKey;
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Arc, LazyLock};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const FAKE_BINARY: &[u8] = b"#!/bin/sh\necho fake terraform\n";

    fn version(text: &str) -> TerraformVersion {
        TerraformVersion::parse(text).unwrap()
    }

    /// Options that find nothing on this machine unless a test puts it there.
    fn isolated_options(root: &Path) -> ResolveOptions {
        ResolveOptions {
            tools_dir: Some(root.join("tools")),
            allow_download: false,
            download_dir: root.join("downloads"),
            release_base_url: "http://127.0.0.1:9".to_owned(),
            os: "linux".to_owned(),
            arch: "amd64".to_owned(),
            search_path: Some(OsString::new()),
            version_timeout: Duration::from_secs(5),
            release_keys: public_keys(&SIGNER),
        }
    }

    /// The test release server's signing key (HashiCorp's stays out of the tests).
    static SIGNER: LazyLock<SignedSecretKey> = LazyLock::new(test_signer);

    fn write_executable(path: &Path, content: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
    }

    fn fake_terraform_reporting(dir: &Path, reported: &str) -> PathBuf {
        let path = dir.join("terraform");
        let script = format!(
            "#!/bin/sh\n[ \"$1 $2\" = \"version -json\" ] || exit 3\n\
             echo '{{\"terraform_version\": \"{reported}\", \"platform\": \"linux_amd64\"}}'\n"
        );
        write_executable(&path, script.as_bytes());
        path
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn accepts_release_and_prerelease_versions() {
        for text in [
            "1.5.7",
            "0.12.31",
            "1.10.0",
            "1.6.0-rc1",
            "1.6.0-alpha20230816",
            "1.8.0-beta.1",
        ] {
            assert_eq!(version(text).as_str(), text);
        }
    }

    #[test]
    fn rejects_versions_that_are_not_strict() {
        let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN));
        for text in [
            "",
            "1",
            "1.5",
            "1.5.7.1",
            "v1.5.7",
            " 1.5.7",
            "1.5.7\n",
            "1..7",
            "1.5.",
            "1.5.x",
            "1.5.7-",
            "1.5.7-RC1",
            "1.5.7-rc/1",
            "1.5.7-rc..1",
            "1.5.7-rc.",
            "1.5.7+ent",
            "../1.5.7",
            "1.5.7/../../etc",
            "1.5.7-rc1-2",
            &long,
        ] {
            let error = TerraformVersion::parse(text).expect_err(text);
            assert!(
                error.to_string().starts_with("invalid Terraform version"),
                "{error}"
            );
        }
    }

    #[test]
    fn builds_release_urls_and_file_names() {
        let v = version("1.0.3");
        let release = Release::new(&v, "linux", "arm64").unwrap();
        assert_eq!(release.archive_name(), "terraform_1.0.3_linux_arm64.zip");
        assert_eq!(release.sums_name(), "terraform_1.0.3_SHA256SUMS");
        for base in [
            "https://releases.hashicorp.com",
            "https://releases.hashicorp.com/",
        ] {
            assert_eq!(
                release.url(base, &release.archive_name()),
                "https://releases.hashicorp.com/terraform/1.0.3/terraform_1.0.3_linux_arm64.zip"
            );
        }
    }

    #[test]
    fn rejects_platform_names_that_could_alter_the_url() {
        let v = version("1.0.3");
        for (os, arch) in [
            ("linux", ""),
            ("linux/../x", "amd64"),
            ("Linux", "amd64"),
            ("linux", "amd64?x=1"),
        ] {
            assert!(matches!(
                Release::new(&v, os, arch),
                Err(ResolveError::InvalidPlatform { .. })
            ));
        }
    }

    #[test]
    fn maps_rust_platform_names_to_release_names() {
        assert_eq!(release_arch_name("x86_64"), "amd64");
        assert_eq!(release_arch_name("aarch64"), "arm64");
        assert_eq!(release_os_name("linux"), "linux");
        assert_eq!(release_os_name("macos"), "darwin");
        let options = ResolveOptions::for_this_machine(None, PathBuf::from("/tmp/d")).unwrap();
        assert_eq!(options.release_base_url, DEFAULT_RELEASE_BASE_URL);
        assert!(options.allow_download);
        assert_eq!(options.os, release_os_name(std::env::consts::OS));
        assert_eq!(options.arch, release_arch_name(std::env::consts::ARCH));
    }

    #[test]
    fn picks_the_checksum_line_for_exactly_the_archive() {
        let wanted = [0xabu8; 32];
        let sums = format!(
            "{}  terraform_1.0.3_darwin_amd64.zip\n\
             {}  terraform_1.0.3_linux_amd64.zip.sig\n\
             {}  terraform_1.0.3_linux_amd64.zip\n\
             {}  terraform_1.0.3_linux_arm64.zip\n",
            hex::encode([1u8; 32]),
            hex::encode([2u8; 32]),
            hex::encode(wanted),
            hex::encode([3u8; 32]),
        );
        assert_eq!(
            expected_sha256(&sums, "terraform_1.0.3_linux_amd64.zip"),
            Some(wanted)
        );
        assert_eq!(
            expected_sha256(&sums, "terraform_1.0.3_linux_arm64.zip"),
            Some([3u8; 32])
        );
        let binary_mode = format!("{} *terraform_1.0.3_linux_amd64.zip\n", hex::encode(wanted));
        assert_eq!(
            expected_sha256(&binary_mode, "terraform_1.0.3_linux_amd64.zip"),
            Some(wanted)
        );
    }

    #[test]
    fn rejects_sums_without_a_well_formed_line_for_the_archive() {
        let name = "terraform_1.0.3_linux_amd64.zip";
        assert_eq!(expected_sha256("", name), None);
        let other = format!(
            "{}  terraform_1.0.3_linux_arm64.zip\n",
            hex::encode([1u8; 32])
        );
        assert_eq!(expected_sha256(&other, name), None);
        assert_eq!(expected_sha256(&format!("abcd  {name}\n"), name), None);
        assert_eq!(
            expected_sha256(&format!("{}  {name}\n", "zz".repeat(32)), name),
            None
        );
        let suffix = format!("{}  x{name}\n", hex::encode([1u8; 32]));
        assert_eq!(expected_sha256(&suffix, name), None);
    }

    #[test]
    fn verifies_checksums() {
        let digest = sha256(b"archive");
        assert!(verify_checksum("a.zip", &digest, &sha256(b"archive")).is_ok());
        let error = verify_checksum("a.zip", &digest, &sha256(b"tampered")).unwrap_err();
        assert_eq!(error.to_string(), "checksum mismatch for a.zip");
    }

    #[tokio::test]
    async fn finds_an_executable_in_the_tools_dir() {
        let root = tempfile::tempdir().unwrap();
        let options = isolated_options(root.path());
        let provided = root.path().join("tools/terraform/1.5.7/terraform");
        write_executable(&provided, FAKE_BINARY);
        assert_eq!(
            resolve_terraform("1.5.7", &options).await.unwrap(),
            provided
        );
    }

    #[tokio::test]
    async fn ignores_a_non_executable_file_in_the_tools_dir() {
        let root = tempfile::tempdir().unwrap();
        let options = isolated_options(root.path());
        let provided = root.path().join("tools/terraform/1.5.7/terraform");
        std::fs::create_dir_all(provided.parent().unwrap()).unwrap();
        std::fs::write(&provided, FAKE_BINARY).unwrap();
        let error = resolve_terraform("1.5.7", &options).await.unwrap_err();
        assert!(
            matches!(error, ResolveError::NotInstalled { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn finds_terraform_on_path_only_with_the_exact_version() {
        let root = tempfile::tempdir().unwrap();
        let older = root.path().join("older");
        let wanted = root.path().join("wanted");
        fake_terraform_reporting(&older, "1.5.6");
        let expected = fake_terraform_reporting(&wanted, "1.5.7");
        let mut options = isolated_options(root.path());
        options.search_path = Some(std::env::join_paths([&older, &wanted]).unwrap());

        assert_eq!(
            resolve_terraform("1.5.7", &options).await.unwrap(),
            expected
        );
        assert_eq!(
            resolve_terraform("1.5.6", &options).await.unwrap(),
            older.join("terraform")
        );
        // "1.5.7" must not match "1.5.7-rc1" or the other way round.
        assert!(resolve_terraform("1.5.7-rc1", &options).await.is_err());
    }

    #[test]
    fn searches_only_absolute_path_entries() {
        let dirs = absolute_dirs(OsStr::new("/usr/bin::.:relative/bin:/opt/tools/bin"));
        assert_eq!(
            dirs,
            [PathBuf::from("/usr/bin"), PathBuf::from("/opt/tools/bin")]
        );
    }

    #[tokio::test]
    async fn ignores_binaries_that_answer_too_slowly_or_not_in_json() {
        let root = tempfile::tempdir().unwrap();
        let slow = root.path().join("slow");
        let text = root.path().join("text");
        write_executable(
            &slow.join("terraform"),
            b"#!/bin/sh\nsleep 5\necho '{\"terraform_version\":\"1.5.7\"}'\n",
        );
        write_executable(
            &text.join("terraform"),
            b"#!/bin/sh\necho 'Terraform v1.5.7'\n",
        );
        let mut options = isolated_options(root.path());
        options.search_path = Some(std::env::join_paths([&slow, &text]).unwrap());
        options.version_timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        assert!(resolve_terraform("1.5.7", &options).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn explains_what_was_searched_when_downloads_are_disabled() {
        let root = tempfile::tempdir().unwrap();
        let options = isolated_options(root.path());
        let message = resolve_terraform("9.9.9", &options)
            .await
            .unwrap_err()
            .to_string();
        let tools = root.path().join("tools/terraform/9.9.9");
        assert!(
            message.starts_with(&format!(
                "Terraform 9.9.9 is not installed (looked in {}, PATH, ",
                tools.display()
            )),
            "{message}"
        );
        assert!(
            message.ends_with(") and downloads are disabled"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn validates_the_version_before_touching_anything() {
        let root = tempfile::tempdir().unwrap();
        let mut options = isolated_options(root.path());
        options.allow_download = true;
        let error = resolve_terraform("../../etc", &options).await.unwrap_err();
        assert!(matches!(error, ResolveError::InvalidVersion(_)));
        assert!(!root.path().join("downloads").exists());
    }

    // --- downloads against a local release server ---

    fn release_zip(entry_name: &str, content: &[u8]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        writer.start_file(entry_name, options).unwrap();
        writer.write_all(content).unwrap();
        writer.finish().unwrap().into_inner()
    }

    /// Serves `files` (path -> body) over HTTP/1.1 on 127.0.0.1; 404 for anything else.
    async fn serve(files: HashMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let files = Arc::new(files);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let files = Arc::clone(&files);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, body) = match files.get(&path) {
                        Some(body) => ("200 OK", body.clone()),
                        None => ("404 Not Found", b"not found".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        format!("http://{address}")
    }

    fn release_files(v: &str, zip: Vec<u8>, listed_digest: [u8; 32]) -> HashMap<String, Vec<u8>> {
        let sums = format!(
            "{}  terraform_{v}_darwin_arm64.zip\n{}  terraform_{v}_linux_amd64.zip\n",
            hex::encode([7u8; 32]),
            hex::encode(listed_digest)
        );
        let mut files =
            HashMap::from([(format!("/terraform/{v}/terraform_{v}_linux_amd64.zip"), zip)]);
        publish_sums(
            &mut files,
            v,
            sums.as_bytes(),
            sign(&SIGNER, sums.as_bytes()),
        );
        files
    }

    fn publish_sums(
        files: &mut HashMap<String, Vec<u8>>,
        v: &str,
        sums: &[u8],
        signature: Vec<u8>,
    ) {
        let sums_path = format!("/terraform/{v}/terraform_{v}_SHA256SUMS");
        files.insert(format!("{sums_path}.sig"), signature);
        files.insert(sums_path, sums.to_vec());
    }

    async fn download_options(root: &Path, files: HashMap<String, Vec<u8>>) -> ResolveOptions {
        let mut options = isolated_options(root);
        options.allow_download = true;
        options.release_base_url = serve(files).await;
        options
    }

    #[tokio::test]
    async fn downloads_verifies_and_installs_the_release() {
        let root = tempfile::tempdir().unwrap();
        let zip = release_zip("terraform", FAKE_BINARY);
        let digest = sha256(&zip);
        let options = download_options(root.path(), release_files("1.0.3", zip, digest)).await;

        let installed = resolve_terraform("1.0.3", &options).await.unwrap();
        assert_eq!(
            installed,
            root.path().join("downloads/terraform/1.0.3/terraform")
        );
        assert_eq!(std::fs::read(&installed).unwrap(), FAKE_BINARY);
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Only the binary is left behind: no archive, no staging file.
        let entries = std::fs::read_dir(installed.parent().unwrap())
            .unwrap()
            .count();
        assert_eq!(entries, 1);
    }

    #[tokio::test]
    async fn reuses_an_earlier_download_without_the_network() {
        let root = tempfile::tempdir().unwrap();
        let zip = release_zip("terraform", FAKE_BINARY);
        let digest = sha256(&zip);
        let mut options = download_options(root.path(), release_files("1.0.3", zip, digest)).await;
        let first = resolve_terraform("1.0.3", &options).await.unwrap();
        options.release_base_url = serve(HashMap::new()).await;
        options.allow_download = false;
        assert_eq!(resolve_terraform("1.0.3", &options).await.unwrap(), first);
    }

    #[tokio::test]
    async fn refuses_a_release_whose_checksum_does_not_match() {
        let root = tempfile::tempdir().unwrap();
        let zip = release_zip("terraform", FAKE_BINARY);
        let options =
            download_options(root.path(), release_files("1.0.3", zip, sha256(b"other"))).await;

        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "checksum mismatch for terraform_1.0.3_linux_amd64.zip"
        );
        let install_dir = root.path().join("downloads/terraform/1.0.3");
        assert!(!install_dir.join("terraform").exists());
        assert_eq!(
            std::fs::read_dir(&install_dir).unwrap().count(),
            0,
            "temp archive left behind"
        );
    }

    #[tokio::test]
    async fn refuses_a_release_missing_from_sha256sums() {
        let root = tempfile::tempdir().unwrap();
        let zip = release_zip("terraform", FAKE_BINARY);
        let mut files = release_files("1.0.3", zip, [0; 32]);
        publish_sums(&mut files, "1.0.3", b"", sign(&SIGNER, b""));
        let options = download_options(root.path(), files).await;
        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "no checksum for terraform_1.0.3_linux_amd64.zip in terraform_1.0.3_SHA256SUMS"
        );
    }

    /// A mirror (or a man in the middle) that swaps the archive and lists its checksum
    /// cannot sign the list: nothing of the release is installed.
    #[tokio::test]
    async fn refuses_sums_not_signed_by_the_release_key() {
        let zip = release_zip("terraform", b"#!/bin/sh\necho swapped\n");
        let digest = sha256(&zip);
        let honest = release_files("1.0.3", zip.clone(), digest);
        let sums = &honest["/terraform/1.0.3/terraform_1.0.3_SHA256SUMS"];
        let forged_sums = [sums.as_slice(), b"# also this\n"].concat();
        let cases = [
            (
                "signed by another key",
                sums.clone(),
                sign(&test_signer(), sums),
            ),
            ("changed after signing", forged_sums, sign(&SIGNER, sums)),
        ];
        for (case, sums, signature) in cases {
            let root = tempfile::tempdir().unwrap();
            let mut files = honest.clone();
            publish_sums(&mut files, "1.0.3", &sums, signature);
            let options = download_options(root.path(), files).await;
            let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
            assert_eq!(
                error.to_string(),
                "terraform_1.0.3_SHA256SUMS is not signed by the release key \
                 (terraform_1.0.3_SHA256SUMS.sig does not verify)",
                "{case}"
            );
            assert!(
                !root.path().join("downloads/terraform/1.0.3").exists(),
                "{case}"
            );
        }

        let root = tempfile::tempdir().unwrap();
        let mut unsigned = honest.clone();
        unsigned.remove("/terraform/1.0.3/terraform_1.0.3_SHA256SUMS.sig");
        let options = download_options(root.path(), unsigned).await;
        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert!(
            matches!(error, ResolveError::ReleaseNotFound { .. }),
            "{error}"
        );
        assert!(error
            .to_string()
            .ends_with("terraform_1.0.3_SHA256SUMS.sig"));
    }

    #[tokio::test]
    async fn reports_an_unknown_release_as_not_found() {
        let root = tempfile::tempdir().unwrap();
        let options = download_options(root.path(), HashMap::new()).await;
        let error = resolve_terraform("9.9.9", &options).await.unwrap_err();
        assert!(matches!(
            error,
            ResolveError::ReleaseNotFound { status: 404, .. }
        ));
        assert!(error
            .to_string()
            .starts_with("Terraform release not found (HTTP 404): http://127.0.0.1:"));
    }

    #[tokio::test]
    async fn refuses_an_archive_without_a_terraform_binary() {
        let root = tempfile::tempdir().unwrap();
        let zip = release_zip("README.md", b"no binary here");
        let digest = sha256(&zip);
        let options = download_options(root.path(), release_files("1.0.3", zip, digest)).await;
        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "terraform_1.0.3_linux_amd64.zip does not contain a `terraform` binary"
        );
    }

    #[tokio::test]
    async fn refuses_an_archive_that_is_not_a_zip() {
        let root = tempfile::tempdir().unwrap();
        let garbage = b"<html>mirror error page</html>".to_vec();
        let digest = sha256(&garbage);
        let options = download_options(root.path(), release_files("1.0.3", garbage, digest)).await;
        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert!(matches!(error, ResolveError::Archive { .. }), "{error}");
    }

    #[tokio::test]
    async fn reports_an_unreachable_server_as_a_network_error() {
        let root = tempfile::tempdir().unwrap();
        let mut options = isolated_options(root.path());
        options.allow_download = true;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        options.release_base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener); // nothing listens there any more
        let error = resolve_terraform("1.0.3", &options).await.unwrap_err();
        assert!(matches!(error, ResolveError::Network { .. }), "{error}");
    }
}
