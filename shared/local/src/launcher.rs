//! The Launcher port for one machine: each deployment phase runs `envplane-runner` in a
//! bubblewrap sandbox (fresh work dir, cleared environment, own PID/IPC/UTS namespaces,
//! only system directories visible, dies with the server). Where bubblewrap is missing
//! it falls back to a plain subprocess with a cleared environment, and says so loudly.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use envplane_core::ports::{LaunchError, LaunchRequest, Launcher};
use envplane_core::secrecy::ExposeSecret;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

/// Where things appear inside the sandbox.
const SANDBOX_RUNNER: &str = "/opt/envplane/envplane-runner";
const SANDBOX_TOOLS: &str = "/opt/envplane/tools";
const SANDBOX_WORK: &str = "/work";
/// How long Terraform gets after SIGINT to leave state and lock clean.
const STOP_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Bubblewrap,
    /// No isolation beyond a cleared environment and a fresh work directory.
    Subprocess,
}

impl Isolation {
    /// Bubblewrap when `bwrap` is on PATH.
    pub fn detect() -> Self {
        let found = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join("bwrap").is_file())
        });
        if found {
            Isolation::Bubblewrap
        } else {
            Isolation::Subprocess
        }
    }
}

#[derive(Debug, Clone)]
pub struct LauncherConfig {
    pub runner_binary: PathBuf,
    /// The API the runner calls back, e.g. `http://127.0.0.1:8080`.
    pub api_url: String,
    /// `<dir>/terraform/<version>/terraform`, mounted read-only.
    pub tools_dir: PathBuf,
    pub isolation: Isolation,
    /// The directory of `file://` repositories the operator shares, resolved (no
    /// symbolic links); `None` shares none.
    pub local_repositories: Option<PathBuf>,
}

/// A `file://` repository as the sandbox sees it: the resolved directory on the host,
/// mounted read-only at the path the template names.
#[derive(Debug)]
struct RepositoryMount {
    host: PathBuf,
    sandbox: PathBuf,
}

impl LauncherConfig {
    /// Resolves a `file://` repository again at launch (the API checked its path when
    /// the template was saved; a symbolic link may point elsewhere since): only a
    /// directory inside the shared one is mounted.
    fn repository_mount(&self, repository: &str) -> Result<Option<RepositoryMount>, LaunchError> {
        let Some(path) = repository.strip_prefix("file://") else {
            return Ok(None);
        };
        let refused = |why: &str| LaunchError::Failed(format!("the repository {repository} {why}"));
        let root = self
            .local_repositories
            .as_deref()
            .ok_or_else(|| refused("is a local path and no local repositories are shared"))?;
        let sandbox = envplane_core::validate::local_repository(path, Some(root))
            .map_err(|error| refused(&error.to_string()))?
            .to_path_buf();
        let host = sandbox
            .canonicalize()
            .map_err(|error| refused(&format!("cannot be read: {error}")))?;
        if !host.starts_with(root) || host == root {
            return Err(refused("resolves outside the local repositories directory"));
        }
        Ok(Some(RepositoryMount { host, sandbox }))
    }
}

/// A sandbox that ended, for the platform to conclude its deployment if it had not
/// reported (the local counterpart of ECS task state change events).
#[derive(Debug, Clone)]
pub struct SandboxExit {
    pub org_id: String,
    pub deployment_id: String,
    pub attempt: u32,
    pub description: String,
}

pub struct LocalLauncher {
    config: LauncherConfig,
    /// Process group of each running sandbox, by deployment.
    running: Arc<Mutex<HashMap<String, i32>>>,
    exits: UnboundedSender<SandboxExit>,
}

impl LocalLauncher {
    pub fn new(config: LauncherConfig, exits: UnboundedSender<SandboxExit>) -> Self {
        if config.isolation == Isolation::Subprocess {
            tracing::warn!(
                "bubblewrap (bwrap) is not installed: deployments run as PLAIN SUBPROCESSES with \
                 only a cleared environment, NOT in a sandbox; install bubblewrap to isolate them"
            );
        }
        Self {
            config,
            running: Arc::new(Mutex::new(HashMap::new())),
            exits,
        }
    }

    fn command(
        &self,
        request: &LaunchRequest,
        repository: Option<&RepositoryMount>,
        work_dir: &Path,
    ) -> Command {
        let environment = [
            ("ENVPLANE_DEPLOYMENT_ID", request.deployment_id.clone()),
            ("ENVPLANE_API_URL", self.config.api_url.clone()),
            (
                "ENVPLANE_RUNNER_TOKEN",
                request.runner_token.expose_secret().to_string(),
            ),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("LANG", "C.UTF-8".to_string()),
        ];
        let mut command = match self.config.isolation {
            Isolation::Bubblewrap => {
                let mut command = Command::new("bwrap");
                command.args(bubblewrap_args(&self.config, repository, work_dir));
                command.arg(SANDBOX_RUNNER);
                command.env_clear();
                command
            }
            Isolation::Subprocess => {
                let mut command = Command::new(&self.config.runner_binary);
                command.env_clear();
                command.current_dir(work_dir);
                command.env("HOME", work_dir);
                command.env("TMPDIR", work_dir);
                command.env("ENVPLANE_TOOLS_DIR", &self.config.tools_dir);
                command
            }
        };
        command.envs(environment);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        command
    }
}

/// The bubblewrap command line: system directories read-only, a fresh work directory,
/// no view of the data directory or the master key.
fn bubblewrap_args(
    config: &LauncherConfig,
    repository: Option<&RepositoryMount>,
    work_dir: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(parts.iter().map(|part| part.as_ref().to_os_string()));
    };
    push(&[
        &"--die-with-parent",
        &"--unshare-pid",
        &"--unshare-ipc",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
    ]);
    push(&[
        &"--ro-bind",
        &"/usr",
        &"/usr",
        &"--ro-bind",
        &"/etc",
        &"/etc",
    ]);
    for dir in ["/bin", "/sbin", "/lib", "/lib64", "/lib32"] {
        push(&[&"--ro-bind-try", &dir, &dir]);
    }
    push(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--tmpfs", &"/tmp"]);
    push(&[
        &"--bind",
        &work_dir,
        &SANDBOX_WORK,
        &"--chdir",
        &SANDBOX_WORK,
    ]);
    push(&[&"--ro-bind", &config.runner_binary, &SANDBOX_RUNNER]);
    push(&[&"--ro-bind-try", &config.tools_dir, &SANDBOX_TOOLS]);
    if let Some(mount) = repository {
        push(&[&"--ro-bind", &mount.host, &mount.sandbox]);
    }
    // The environment is bwrap's own, cleared down to the runner's variables: the token
    // travels there, never as an argument.
    push(&[
        &"--setenv",
        &"HOME",
        &SANDBOX_WORK,
        &"--setenv",
        &"TMPDIR",
        &"/tmp",
    ]);
    push(&[&"--setenv", &"ENVPLANE_TOOLS_DIR", &SANDBOX_TOOLS]);
    args
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("the runner exited with code {code}"),
            (None, Some(signal)) => format!("the runner was killed by signal {signal}"),
            _ => "the runner ended".to_string(),
        },
        Err(error) => format!("waiting for the runner failed: {error}"),
    }
}

#[async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<(), LaunchError> {
        if !self.config.runner_binary.is_file() {
            return Err(LaunchError::Failed(format!(
                "envplane-runner not found at {}",
                self.config.runner_binary.display()
            )));
        }
        let repository = self.config.repository_mount(&request.repository)?;
        let work_dir = tempfile::Builder::new()
            .prefix("envplane-sandbox-")
            .tempdir()
            .map_err(|e| {
                LaunchError::Failed(format!("cannot create the sandbox work directory: {e}"))
            })?;
        let mut child = self
            .command(&request, repository.as_ref(), work_dir.path())
            .spawn()
            .map_err(|e| LaunchError::Failed(format!("cannot start the sandbox: {e}")))?;
        let process_group = child.id().map(|pid| pid as i32);
        if let Some(group) = process_group {
            lock(&self.running).insert(request.deployment_id.clone(), group);
        }
        for stream in [
            child.stdout.take().map(Either::Out),
            child.stderr.take().map(Either::Err),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(forward_runner_output(request.deployment_id.clone(), stream));
        }
        let (running, exits) = (self.running.clone(), self.exits.clone());
        tokio::spawn(async move {
            let description = describe(child.wait().await);
            lock(&running).remove(&request.deployment_id);
            drop(work_dir);
            let _ = exits.send(SandboxExit {
                org_id: request.org_id,
                deployment_id: request.deployment_id,
                attempt: request.attempt,
                description,
            });
        });
        Ok(())
    }

    /// One sandbox runs per deployment at a time here, so the attempt needs no check.
    async fn stop(&self, _org_id: &str, deployment_id: &str, _: u32) -> Result<(), LaunchError> {
        let Some(group) = lock(&self.running).get(deployment_id).copied() else {
            return Ok(());
        };
        let group = Pid::from_raw(group);
        // The whole process group: the runner, and Terraform, which then stops cleanly.
        let _ = killpg(group, Signal::SIGINT);
        let running = self.running.clone();
        let deployment_id = deployment_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_GRACE).await;
            if lock(&running).get(&deployment_id) == Some(&group.as_raw()) {
                let _ = killpg(group, Signal::SIGKILL);
            }
        });
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Either {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

/// The runner's own diagnostics (never the deployment log, never a value) go to the
/// server's log, tagged with the deployment.
async fn forward_runner_output(deployment_id: String, stream: Either) {
    let mut lines = match stream {
        Either::Out(out) => {
            Box::pin(BufReader::new(out)) as std::pin::Pin<Box<dyn tokio::io::AsyncBufRead + Send>>
        }
        Either::Err(err) => Box::pin(BufReader::new(err)),
    }
    .lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(deployment_id = %deployment_id, "runner: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LauncherConfig {
        LauncherConfig {
            runner_binary: "/opt/build/envplane-runner".into(),
            api_url: "http://127.0.0.1:8080".into(),
            tools_dir: "/var/lib/envplane/tools".into(),
            isolation: Isolation::Bubblewrap,
            local_repositories: None,
        }
    }

    fn command_line(repository: Option<&RepositoryMount>) -> String {
        bubblewrap_args(&config(), repository, Path::new("/tmp/w"))
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_token_is_never_a_command_line_argument() {
        let joined = command_line(None);
        assert!(!joined.contains("ert_secret_token"));
        assert!(joined.contains("--die-with-parent"));
        assert!(joined.contains("--unshare-pid"));
        assert!(!joined.contains("/var/lib/envplane/envplane.db"));
    }

    #[test]
    fn only_repositories_inside_the_shared_directory_are_mounted_read_only() {
        let shared = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = shared.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("infra")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        let sharing = LauncherConfig {
            local_repositories: Some(root.clone()),
            ..config()
        };
        let url = |path: &Path| format!("file://{}", path.display());

        let mount = sharing
            .repository_mount(&url(&root.join("infra")))
            .unwrap()
            .unwrap();
        let infra = root.join("infra").display().to_string();
        assert!(command_line(Some(&mount)).contains(&format!("--ro-bind {infra} {infra}")));
        assert!(sharing
            .repository_mount("https://github.com/acme/infra.git")
            .unwrap()
            .is_none());
        for refused in [
            url(&root.join("escape")),
            url(&root.join("../x")),
            url(outside.path()),
            url(&root),
        ] {
            assert!(sharing.repository_mount(&refused).is_err(), "{refused}");
        }
        let unshared = config();
        assert!(unshared
            .repository_mount(&url(&root.join("infra")))
            .is_err());
    }
}
