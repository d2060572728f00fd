//! A network of its own for each sandbox: a network namespace whose only way out is
//! slirp4netns (user-mode NAT to the internet, so providers and clouds keep working),
//! with the host's loopback closed (`--disable-host-loopback`) and routes inside it that
//! refuse private, shared and link-local ranges (the cloud metadata addresses among
//! them) and whatever the operator adds. Template code runs there as an unprivileged
//! user without capabilities, so it cannot change those routes. The platform's API is
//! not reachable over this network at all: the launcher hands the sandbox a UNIX socket
//! (see [`ApiBridge`]).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpStream, UnixListener};
use tokio::task::JoinHandle;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// slirp4netns's DNS forwarder inside the sandbox's network.
pub const SANDBOX_DNS: &str = "10.0.2.3";

/// Refused from every sandbox: "this" network, private (RFC 1918), shared (RFC 6598),
/// link-local (instance metadata at 169.254.169.254), multicast and reserved, and IPv6
/// unique-local (fd00:ec2::254 is EC2's metadata address). slirp4netns's own network
/// (10.0.2.0/24: gateway and DNS) stays reachable through its more specific route.
pub const BLOCKED_RANGES: [&str; 9] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "fc00::/7",
];

#[derive(Debug, thiserror::Error)]
#[error("the sandbox's network could not be set up: {0}")]
pub struct NetworkError(String);

/// What a sandbox network needs on this machine: root (to make namespaces), `ip`,
/// `nsenter` and `slirp4netns`. `Err` says what is missing.
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("sandboxes get a network of their own only when envplane runs as root".into());
    }
    let missing: Vec<&str> = ["ip", "nsenter", "slirp4netns"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} not installed", missing.join(", ")))
    }
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// A network namespace with slirp4netns attached; both removed when dropped.
#[derive(Debug)]
pub struct SandboxNetwork {
    name: String,
    slirp: Child,
    /// slirp4netns exits when this closes, also when the server dies.
    _exit: OwnedFd,
}

impl SandboxNetwork {
    /// Creates the namespace `name` and waits until slirp4netns has configured it.
    pub fn create(name: &str, extra_blocked: &[String]) -> Result<Self, NetworkError> {
        ip(&["netns", "add", name])?;
        let path = Path::new(NETNS_DIR).join(name);
        let result = Self::attach(name, &path, extra_blocked);
        if result.is_err() {
            let _ = ip(&["netns", "delete", name]);
        }
        result
    }

    fn attach(name: &str, path: &Path, extra_blocked: &[String]) -> Result<Self, NetworkError> {
        let failed = |what: &str, error: std::io::Error| NetworkError(format!("{what}: {error}"));
        let (mut ready_read, ready_write) = std::io::pipe().map_err(|e| failed("pipe", e))?;
        let (exit_read, exit_write) = std::io::pipe().map_err(|e| failed("pipe", e))?;
        let (ready_fd, exit_fd): (OwnedFd, OwnedFd) = (ready_write.into(), exit_read.into());
        let mut command = Command::new("slirp4netns");
        command
            .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
            .args(["--ready-fd=3", "--exit-fd=4", "--netns-type=path"])
            .arg(path)
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (ready_raw, exit_raw) = (ready_fd.as_raw_fd(), exit_fd.as_raw_fd());
        // SAFETY: only fcntl and dup2, both async-signal-safe, between fork and exec.
        // Copied above 10 first, so that neither pipe end is overwritten by the other's
        // dup2 when it already sits at 3 or 4.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let ready = libc::fcntl(ready_raw, libc::F_DUPFD, 10);
                let exit = libc::fcntl(exit_raw, libc::F_DUPFD, 10);
                if ready < 0 || exit < 0 || libc::dup2(ready, 3) < 0 || libc::dup2(exit, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut slirp = command
            .spawn()
            .map_err(|e| failed("cannot start slirp4netns", e))?;
        drop((ready_fd, exit_fd));
        let mut ready = [0u8; 1];
        if ready_read.read_exact(&mut ready).is_err() {
            let _ = slirp.kill();
            let status = slirp.wait();
            return Err(NetworkError(format!(
                "slirp4netns ended before the network was configured ({status:?})"
            )));
        }
        let network = Self {
            name: name.to_string(),
            slirp,
            _exit: exit_write.into(),
        };
        network.block(extra_blocked)?;
        Ok(network)
    }

    /// Routes that refuse the blocked ranges, in one `ip -batch`.
    fn block(&self, extra_blocked: &[String]) -> Result<(), NetworkError> {
        let mut batch = String::from("link set lo up\n");
        // `ip` tells IPv4 from IPv6 by the address.
        for range in BLOCKED_RANGES
            .iter()
            .copied()
            .chain(extra_blocked.iter().map(String::as_str))
        {
            batch.push_str(&format!("route add prohibit {range}\n"));
        }
        ip_with_input(&["-netns", &self.name, "-batch", "-"], batch.as_bytes())
    }

    /// The namespace's path, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }
}

impl Drop for SandboxNetwork {
    fn drop(&mut self) {
        let _ = self.slirp.kill();
        let _ = self.slirp.wait();
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    ip_with_input(args, b"")
}

/// Runs `ip` with `input` on its standard input; its error output becomes the error.
fn ip_with_input(args: &[&str], input: &[u8]) -> Result<(), NetworkError> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| NetworkError(format!("cannot write to ip: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| NetworkError(format!("ip failed: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The API for one sandbox, over a UNIX socket in a directory bound into it: every
/// connection is passed on to the API's TCP address on the host. Stops when dropped.
pub struct ApiBridge {
    accepting: JoinHandle<()>,
}

impl ApiBridge {
    pub fn bind(socket: &Path, api_address: String) -> std::io::Result<Self> {
        let listener = UnixListener::bind(socket)?;
        let accepting = tokio::spawn(async move {
            while let Ok((mut sandbox, _)) = listener.accept().await {
                let api_address = api_address.clone();
                tokio::spawn(async move {
                    if let Ok(mut api) = TcpStream::connect(&api_address).await {
                        let _ = tokio::io::copy_bidirectional(&mut sandbox, &mut api).await;
                    }
                });
            }
        });
        Ok(Self { accepting })
    }
}

impl Drop for ApiBridge {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
