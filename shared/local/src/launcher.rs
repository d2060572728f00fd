//! The Launcher port for one machine: each deployment phase runs `envplane-runner` in a
//! bubblewrap sandbox: a fresh work dir, a cleared environment, its own PID, IPC, UTS,
//! user and network namespaces (see [`crate::network`]), an unprivileged user without
//! capabilities, a session of its own (no controlling terminal to inject keystrokes
//! into), only system directories visible, and it dies with the server. Where such a
//! sandbox cannot be made, deployments are refused, unless the operator started
//! `envplane serve --unsafe-no-sandbox`: then they run as plain subprocesses.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
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

use crate::network::{self, ApiBridge, SandboxNetwork};
use crate::seccomp;

/// Where things appear inside the sandbox.
const SANDBOX_RUNNER: &str = "/opt/envplane/envplane-runner";
const SANDBOX_TOOLS: &str = "/opt/envplane/tools";
const SANDBOX_WORK: &str = "/work";
const SANDBOX_RUN: &str = "/run/envplane";
const API_SOCKET_NAME: &str = "api.sock";
const SANDBOX_API_SOCKET: &str = "/run/envplane/api.sock";
/// Where bubblewrap finds the seccomp filters.
const SECCOMP_FDS: [i32; 2] = [10, 11];
/// How long Terraform gets after SIGINT to leave state and lock clean.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// Sandboxes run at a lower priority than the server (and cannot raise it: they hold no
/// capability), so the server hands slots on and answers runners at once while
/// Terraform keeps every core busy.
const SANDBOX_NICENESS: i32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Bubblewrap in a network namespace of its own.
    Sandbox,
    /// No isolation beyond a cleared environment and a fresh work directory: only when
    /// the operator asked for it (`--unsafe-no-sandbox`).
    Unsafe,
    /// No sandbox can be made on this machine, for this reason: deployments are refused.
    Unavailable(String),
}

impl Isolation {
    /// A sandbox when bubblewrap and a sandbox network can be had here.
    pub fn detect() -> Self {
        if !network::on_path("bwrap") {
            return Isolation::Unavailable("bubblewrap (bwrap) is not installed".into());
        }
        match network::available() {
            Ok(()) => Isolation::Sandbox,
            Err(why) => Isolation::Unavailable(why),
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
    /// Address ranges sandboxes may not reach, beyond [`network::BLOCKED_RANGES`].
    pub blocked_ranges: Vec<String>,
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

/// A sandbox of the launcher's, from the start of its launch to its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Its network is being set up; `stop` asked for it meanwhile, or not.
    Starting { stop: bool },
    /// Its process group.
    Running(i32),
}

pub struct LocalLauncher {
    config: LauncherConfig,
    /// Each sandbox being started or running, by deployment and attempt.
    running: Arc<Mutex<HashMap<(String, u32), Slot>>>,
    exits: UnboundedSender<SandboxExit>,
}

impl LocalLauncher {
    pub fn new(config: LauncherConfig, exits: UnboundedSender<SandboxExit>) -> Self {
        match &config.isolation {
            Isolation::Sandbox => {}
            Isolation::Unsafe => tracing::warn!(
                "--unsafe-no-sandbox: deployments run as PLAIN SUBPROCESSES with only a \
                 cleared environment, NOT in a sandbox: template code can reach this host"
            ),
            Isolation::Unavailable(why) => tracing::error!(
                "no deployment sandbox can be made here ({why}): deployments are refused; \
                 install what is missing, or start with --unsafe-no-sandbox to run them unsandboxed"
            ),
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
        dirs: &SandboxDirs,
        network: Option<&SandboxNetwork>,
    ) -> Command {
        let mut command = match network {
            Some(network) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", network.path().display()))
                    .arg("bwrap")
                    .args(bubblewrap_args(&self.config, repository, dirs))
                    .arg(SANDBOX_RUNNER)
                    .env_clear()
                    .env("ENVPLANE_API_SOCKET", SANDBOX_API_SOCKET);
                command
            }
            None => {
                let mut command = Command::new(&self.config.runner_binary);
                command
                    .env_clear()
                    .current_dir(&dirs.work)
                    .env("HOME", &dirs.work)
                    .env("TMPDIR", &dirs.work)
                    .env("ENVPLANE_TOOLS_DIR", &self.config.tools_dir)
                    .env("ENVPLANE_API_URL", &self.config.api_url);
                command
            }
        };
        command
            .env("ENVPLANE_DEPLOYMENT_ID", &request.deployment_id)
            .env(
                "ENVPLANE_RUNNER_TOKEN",
                request.runner_token.expose_secret(),
            )
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        // SAFETY: setsid, setpriority, fcntl and dup2 are async-signal-safe. A session of
        // its own: no controlling terminal (nothing to inject keystrokes into with
        // TIOCSTI), and its own process group, which `stop` signals as a whole. The
        // seccomp filters' files go to SECCOMP_FDS (all copied above them first, so no
        // dup2 overwrites a file not yet moved).
        let seccomp: Vec<i32> = dirs.seccomp.iter().map(|file| file.as_raw_fd()).collect();
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::setpriority(libc::PRIO_PROCESS as _, 0, SANDBOX_NICENESS) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let above = SECCOMP_FDS[SECCOMP_FDS.len() - 1] + 1;
                let mut copies = [-1; SECCOMP_FDS.len()];
                for (copy, &fd) in copies.iter_mut().zip(&seccomp) {
                    *copy = libc::fcntl(fd, libc::F_DUPFD, above);
                    if *copy < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (&copy, &target) in copies.iter().zip(&SECCOMP_FDS).take(seccomp.len()) {
                    if libc::dup2(copy, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(copy);
                }
                Ok(())
            });
        }
        command
    }

    /// The API's `host:port` for the bridge: sandboxes reach the API through it.
    fn api_address(&self) -> Result<String, LaunchError> {
        self.config
            .api_url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|authority| !authority.is_empty() && !authority.contains('/'))
            .map(str::to_string)
            .ok_or_else(|| {
                LaunchError::Failed(format!(
                    "sandboxes reach the API through this server's own listener, so its URL \
                     must be http://host:port, not {}",
                    self.config.api_url
                ))
            })
    }

    /// The network and the API bridge of one sandbox.
    async fn connect(
        &self,
        request: &LaunchRequest,
        dirs: &SandboxDirs,
    ) -> Result<(SandboxNetwork, ApiBridge), LaunchError> {
        let api_address = self.api_address()?;
        let name = format!("envplane-{}-{}", request.deployment_id, request.attempt);
        let blocked = self.config.blocked_ranges.clone();
        let network = tokio::task::spawn_blocking(move || SandboxNetwork::create(&name, &blocked))
            .await
            .map_err(|e| LaunchError::Failed(format!("the sandbox network task failed: {e}")))?
            .map_err(|e| LaunchError::Failed(e.to_string()))?;
        let bridge =
            ApiBridge::bind(&dirs.run.join(API_SOCKET_NAME), api_address).map_err(|e| {
                LaunchError::Failed(format!("cannot bind the sandbox's API socket: {e}"))
            })?;
        Ok((network, bridge))
    }
}

/// A sandbox's directories on the host, removed with it: `work` (its `/work`), `run`
/// (its `/run/envplane`, the API socket) and the `resolv.conf` of its network.
struct SandboxDirs {
    _root: tempfile::TempDir,
    work: PathBuf,
    run: PathBuf,
    resolv_conf: PathBuf,
    /// The seccomp filters bubblewrap loads, open for the child to inherit.
    seccomp: Vec<std::fs::File>,
}

impl SandboxDirs {
    fn create() -> std::io::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("envplane-sandbox-")
            .tempdir()?;
        let (work, run) = (root.path().join("work"), root.path().join("run"));
        std::fs::create_dir(&work)?;
        std::fs::create_dir(&run)?;
        let resolv_conf = root.path().join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("nameserver {}\n", network::SANDBOX_DNS),
        )?;
        Ok(Self {
            _root: root,
            work,
            run,
            resolv_conf,
            seccomp: Vec::new(),
        })
    }

    /// Writes the seccomp filters beside the sandbox and opens them for bubblewrap.
    fn with_seccomp(mut self) -> Result<Self, LaunchError> {
        let failed = |e: String| LaunchError::Failed(format!("the seccomp filters: {e}"));
        for (index, program) in seccomp::programs().map_err(failed)?.iter().enumerate() {
            let path = self._root.path().join(format!("seccomp-{index}.bpf"));
            std::fs::write(&path, program).map_err(|e| failed(e.to_string()))?;
            let file = std::fs::File::open(&path).map_err(|e| failed(e.to_string()))?;
            self.seccomp.push(file);
        }
        Ok(self)
    }
}

/// The bubblewrap command line: system directories read-only, a fresh work directory,
/// no view of the data directory or the master key.
fn bubblewrap_args(
    config: &LauncherConfig,
    repository: Option<&RepositoryMount>,
    dirs: &SandboxDirs,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(parts.iter().map(|part| part.as_ref().to_os_string()));
    };
    push(&[
        &"--die-with-parent",
        &"--unshare-user",
        &"--uid",
        &"65534",
        &"--gid",
        &"65534",
        &"--cap-drop",
        &"ALL",
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
    push(&[&"--ro-bind", &dirs.resolv_conf, &"/etc/resolv.conf"]);
    for fd in &SECCOMP_FDS[..dirs.seccomp.len()] {
        push(&[&"--add-seccomp-fd", &fd.to_string()]);
    }
    push(&[&"--bind", &dirs.run, &SANDBOX_RUN]);
    push(&[
        &"--bind",
        &dirs.work,
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
        if let Isolation::Unavailable(why) = &self.config.isolation {
            return Err(LaunchError::Failed(format!(
                "no sandbox can be made on this machine ({why}); envplane refuses to run \
                 deployments without one unless it is started with --unsafe-no-sandbox"
            )));
        }
        if !self.config.runner_binary.is_file() {
            return Err(LaunchError::Failed(format!(
                "envplane-runner not found at {}",
                self.config.runner_binary.display()
            )));
        }
        // Registered before the (slow) setup, so a cancel that comes meanwhile is kept.
        let key = (request.deployment_id.clone(), request.attempt);
        lock(&self.running).insert(key.clone(), Slot::Starting { stop: false });
        let started = self.start(&request).await;
        if started.is_err() {
            lock(&self.running).remove(&key);
        }
        started
    }

    async fn stop(
        &self,
        _org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<(), LaunchError> {
        let key = (deployment_id.to_string(), attempt);
        let group = match lock(&self.running).get_mut(&key) {
            Some(Slot::Running(group)) => Pid::from_raw(*group),
            Some(Slot::Starting { stop }) => {
                *stop = true;
                return Ok(());
            }
            None => return Ok(()),
        };
        // The whole process group: the runner, and Terraform, which then stops cleanly.
        let _ = killpg(group, Signal::SIGINT);
        let running = self.running.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_GRACE).await;
            if lock(&running).get(&key) == Some(&Slot::Running(group.as_raw())) {
                let _ = killpg(group, Signal::SIGKILL);
            }
        });
        Ok(())
    }
}

impl LocalLauncher {
    async fn start(&self, request: &LaunchRequest) -> Result<(), LaunchError> {
        let request = request.clone();
        let key = (request.deployment_id.clone(), request.attempt);
        let repository = self.config.repository_mount(&request.repository)?;
        let dirs = SandboxDirs::create().map_err(|e| {
            LaunchError::Failed(format!("cannot create the sandbox's directories: {e}"))
        })?;
        let (dirs, connection) = match self.config.isolation {
            Isolation::Sandbox => {
                let dirs = dirs.with_seccomp()?;
                let connection = self.connect(&request, &dirs).await?;
                (dirs, Some(connection))
            }
            _ => (dirs, None),
        };
        let network = connection.as_ref().map(|(network, _)| network);
        let spawned = self
            .command(&request, repository.as_ref(), &dirs, network)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                // Removing the namespace runs `ip`: off the async workers.
                let _ = tokio::task::spawn_blocking(move || drop(connection)).await;
                return Err(LaunchError::Failed(format!(
                    "cannot start the sandbox: {error}"
                )));
            }
        };
        if let Some(group) = child.id().map(|pid| pid as i32) {
            let slot = lock(&self.running).insert(key.clone(), Slot::Running(group));
            if slot == Some(Slot::Starting { stop: true }) {
                // Cancelled while its network was being set up: stop it now.
                let _ = killpg(Pid::from_raw(group), Signal::SIGINT);
            }
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
            lock(&running).remove(&key);
            // Removing the namespace runs `ip`: off the async workers.
            let _ = tokio::task::spawn_blocking(move || drop((connection, dirs))).await;
            let _ = exits.send(SandboxExit {
                org_id: request.org_id,
                deployment_id: request.deployment_id,
                attempt: request.attempt,
                description,
            });
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
    use std::path::Path;

    use super::*;

    fn config() -> LauncherConfig {
        LauncherConfig {
            runner_binary: "/opt/build/envplane-runner".into(),
            api_url: "http://127.0.0.1:8080".into(),
            tools_dir: "/var/lib/envplane/tools".into(),
            isolation: Isolation::Sandbox,
            local_repositories: None,
            blocked_ranges: Vec::new(),
        }
    }

    fn command_line(repository: Option<&RepositoryMount>) -> String {
        let dirs = SandboxDirs::create().unwrap();
        bubblewrap_args(&config(), repository, &dirs)
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
        assert!(joined.contains("--unshare-user --uid 65534 --gid 65534 --cap-drop ALL"));
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
