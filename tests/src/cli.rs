//! The `envplane` binary as a user runs it: `envplane serve` on a random loopback port
//! (with the runner and the test Terraform, so deployments really run), and CLI runs
//! against it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;

use serde_json::Value;
use tempfile::TempDir;

use crate::{binary, repositories_dir, tools_dir, PATIENCE};

/// A running `envplane serve`, killed when dropped (also when a test panics).
pub struct Server {
    child: Child,
    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The default organization's admin key, read from `DATA_DIR/admin-key`.
    pub admin_key: String,
    /// What serve printed to stdout up to its address line (the first start prints the
    /// admin key there).
    pub printed: String,
    /// Every output of every CLI run, to check that a secret was never printed.
    transcript: Mutex<String>,
    /// The network namespace serve and every CLI run are in, when not the machine's.
    network: Option<PathBuf>,
    /// The data directory when the server owns it.
    _data_dir: Option<TempDir>,
}

/// `program` run in `network`, or where the tests run when `None`.
fn command_in(network: Option<&Path>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match network {
        Some(network) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", network.display()))
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One finished CLI run.
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    /// Starts serve on a fresh data directory, removed with the server.
    pub fn start() -> Server {
        Server::start_with(None)
    }

    /// Starts serve inside the network namespace at `network` (see
    /// [`crate::network::TestNetwork`]); the CLI runs there too.
    pub fn start_in_network(network: &Path) -> Server {
        Server::start_with(Some(network))
    }

    fn start_with(network: Option<&Path>) -> Server {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Server::launch(data_dir.path(), network);
        server._data_dir = Some(data_dir);
        server
    }

    /// Starts serve on `data_dir`, which outlives the server (to start again on it).
    pub fn start_in(data_dir: &Path) -> Server {
        Server::launch(data_dir, None)
    }

    fn launch(data_dir: &Path, network: Option<&Path>) -> Server {
        let mut child = command_in(network, binary("envplane"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--runner")
            .arg(binary("envplane-runner"))
            .arg("--tools-dir")
            .arg(tools_dir())
            .arg("--local-repos")
            .arg(repositories_dir())
            .env("ENVPLANE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("envplane serve starts");
        // Read stdout on a thread: it lets us time out, and keeps draining the pipe so
        // that the server never blocks on it.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut printed = Vec::new();
        let url = loop {
            let line = received
                .recv_timeout(PATIENCE)
                .expect("envplane serve prints its address");
            let address = line
                .strip_prefix("envplane listening on ")
                .map(|address| address.trim().to_string());
            printed.push(line);
            if let Some(address) = address {
                break address;
            }
        };
        let admin_key = std::fs::read_to_string(data_dir.join("admin-key"))
            .expect("serve saves the admin key")
            .trim()
            .to_string();
        Server {
            child,
            url,
            admin_key,
            printed: printed.join("\n"),
            transcript: Mutex::default(),
            network: network.map(Path::to_path_buf),
            _data_dir: None,
        }
    }

    /// Runs the CLI with the admin key; `stdin` is piped in when given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_as(&self.admin_key, args, stdin)
    }

    /// Runs the CLI with `key` (none at all when empty).
    pub fn run_as(&self, key: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = command_in(self.network.as_deref(), binary("envplane"));
        command
            .args(args)
            .env("ENVPLANE_URL", &self.url)
            .env("ENVPLANE_LOG", "warn")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if key.is_empty() {
            command.env_remove("ENVPLANE_API_KEY");
        } else {
            command.env("ENVPLANE_API_KEY", key);
        }
        let mut child = command.spawn().expect("the CLI starts");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes())
                .expect("stdin takes the value");
        }
        let output = child.wait_with_output().expect("the CLI finishes");
        let run = Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        };
        let mut transcript = self.transcript.lock().unwrap();
        transcript.push_str(&run.stdout);
        transcript.push_str(&run.stderr);
        drop(transcript);
        eprintln!(
            "$ envplane {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run
    }

    /// Everything the CLI runs printed so far, stdout and stderr.
    pub fn transcript(&self) -> String {
        self.transcript.lock().unwrap().clone()
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args, None);
        assert!(run.success, "envplane {args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a command that must succeed with `--output json` and parses its answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("--output json prints JSON")
    }

    /// Runs a command that must fail and returns its run.
    pub fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args, None);
        assert!(!run.success, "envplane {args:?} should have failed");
        run
    }

    /// A project, a template on `repository` (Terraform 1.0.3) and an environment, all
    /// named `name`, the environment created with `extra` arguments; answers its id.
    pub fn environment(&self, repository: &TempDir, name: &str, extra: &[&str]) -> String {
        let project = id(&self.json(&["project", "create", name]));
        let repository = format!("file://{}", repository.path().display());
        let template = id(&self.json(&[
            "template",
            "create",
            name,
            "--project",
            &project,
            "--repository",
            &repository,
            "--iac-version",
            "1.0.3",
        ]));
        let mut args = vec![
            "environment",
            "create",
            name,
            "--project",
            &project,
            "--template",
            &template,
        ];
        args.extend(extra);
        id(&self.json(&args))
    }

    /// The id of the environment's newest deployment.
    pub fn latest(&self, environment: &str) -> String {
        id(&self.json(&["deployments", environment, "--limit", "1"])["items"][0])
    }
}

/// The `id` of a JSON answer.
pub fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}
