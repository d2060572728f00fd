//! Running the step commands (git, hooks, Terraform): output merged into one ordered,
//! masked stream; an interrupt of the runner becomes exactly one SIGINT to the command,
//! so Terraform can release its state lock and save state before it exits. A step ends
//! when its command exits: what the command left running in its process group (a
//! hook's `daemon &` holding the output open) gets a short grace, then is killed.

use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long what a command left behind may go on after it exited.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(5);
/// How long output still in the pipe is read once the leftovers are killed, in case a
/// process outside the group holds the pipe open.
const LAST_READ: Duration = Duration::from_millis(200);
const READ_BUFFER: usize = 64 * 1024;

use crate::logs::StepLog;

/// Set once the runner is asked to stop (SIGINT or SIGTERM).
#[derive(Clone)]
pub struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    /// Listens for SIGINT and SIGTERM (ECS StopTask sends SIGTERM).
    pub fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let (sender, receiver) = watch::channel(false);
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            let _ = sender.send(true);
        });
        Ok(Self(receiver))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{program} could not start: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} {}", describe(*.status))]
    Exit { program: String, status: ExitStatus },
}

impl RunError {
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Exit { status, .. } => status.code(),
            RunError::Spawn { .. } => None,
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was stopped by signal {signal}"),
        _ => "failed".to_string(),
    }
}

fn program_name(command: &Command) -> String {
    command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned()
}

/// Runs `command`, streaming stdout and stderr (interleaved as written) into `log`.
/// Returns the exit status even when it is not success (Terraform's `-detailed-exitcode`).
pub async fn run_logged(
    mut command: Command,
    log: &mut StepLog,
    interrupt: &Interrupt,
) -> Result<ExitStatus, RunError> {
    let program = program_name(&command);
    let spawn_error = |source| RunError::Spawn {
        program: program.clone(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;
    let mut output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(spawn_error)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_for_stderr))
        .process_group(0);
    let mut child = command.spawn().map_err(spawn_error)?;
    // The command's copies of the pipe's write end are the only ones left.
    drop(command);
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let mut interrupt = interrupt.0.clone();
    let mut interrupted = *interrupt.borrow();
    if interrupted {
        signal(group);
    }
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut open = true;
    let status = loop {
        tokio::select! {
            read = output.read(&mut buffer), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(read) => log.push(&buffer[..read]),
            },
            status = child.wait() => break status.map_err(spawn_error)?,
            changed = interrupt.changed(), if !interrupted => {
                if changed.is_ok() && *interrupt.borrow() {
                    interrupted = true;
                    signal(group);
                }
            }
        }
    };
    let grace_ends = Instant::now() + LEFTOVER_GRACE;
    if open {
        read_until(&mut output, &mut buffer, log, grace_ends).await;
    }
    if let Some(group) = group {
        end_leftovers(group, log, grace_ends).await;
    }
    read_until(&mut output, &mut buffer, log, Instant::now() + LAST_READ).await;
    Ok(status)
}

/// Logs the output until its end or `deadline`, whichever comes first.
async fn read_until(
    output: &mut pipe::Receiver,
    buffer: &mut [u8],
    log: &mut StepLog,
    deadline: Instant,
) {
    while let Ok(Ok(read @ 1..)) = tokio::time::timeout_at(deadline, output.read(buffer)).await {
        log.push(&buffer[..read]);
    }
}

/// Waits until `deadline` for the exited command's process group to empty, then kills
/// whatever is still in it.
async fn end_leftovers(group: Pid, log: &mut StepLog, deadline: Instant) {
    while group_is_alive(group) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if group_is_alive(group) && killpg(group, Signal::SIGKILL).is_ok() {
        log.push(
            format!(
                "\nenvplane: the command exited; what it left running was stopped after {} s\n",
                LEFTOVER_GRACE.as_secs()
            )
            .as_bytes(),
        );
    }
}

fn group_is_alive(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

/// Like `run_logged`, but a non-zero exit is an error.
pub async fn run_checked(
    command: Command,
    log: &mut StepLog,
    interrupt: &Interrupt,
) -> Result<(), RunError> {
    let program = program_name(&command);
    let status = run_logged(command, log, interrupt).await?;
    if status.success() {
        Ok(())
    } else {
        Err(RunError::Exit { program, status })
    }
}

/// Runs `command` and returns its stdout, which is NOT logged: it may hold values
/// (`terraform show -json`, `terraform output -json`). Stderr goes to `log`.
pub async fn run_captured(mut command: Command, log: &mut StepLog) -> Result<Vec<u8>, RunError> {
    let program = program_name(&command);
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    log.push(&output.stderr);
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(RunError::Exit {
            program,
            status: output.status,
        })
    }
}

fn signal(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGINT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ApiClient;
    use crate::logs::LogShipper;

    /// Far beyond the grace: a step that waited for its leftovers' output to close
    /// would fail here rather than hang the suite.
    const NEVER: Duration = Duration::from_secs(120);

    fn step_log() -> StepLog {
        // Nothing listens on the discard port: shipped chunks are dropped.
        let client = ApiClient::new("http://127.0.0.1:9", "ert_test".into()).unwrap();
        LogShipper::start(client, Vec::new()).0.step("hook")
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    async fn run(script: &str) -> (ExitStatus, StepLog) {
        let (_keep, receiver) = watch::channel(false);
        let mut log = step_log();
        let status = tokio::time::timeout(
            NEVER,
            run_logged(shell(script), &mut log, &Interrupt(receiver)),
        )
        .await
        .expect("the step ended")
        .unwrap();
        (status, log)
    }

    fn is_running(pid: i32) -> bool {
        // A zombie has exited; /proc says so in its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[tokio::test]
    async fn a_step_ends_with_its_command_and_what_it_left_running_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("leftover.pid");
        let script = format!(
            "sleep 300 & echo $! > {}; echo started; exit 3",
            pid_file.display()
        );
        let (status, log) = run(&script).await;
        assert_eq!(status.code(), Some(3));
        let leftover: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL was sent; its delivery is the kernel's to finish.
        let killed = Instant::now() + NEVER;
        while is_running(leftover) {
            assert!(Instant::now() < killed, "the leftover sleep still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            log.last_error_line().as_deref(),
            Some("envplane: the command exited; what it left running was stopped after 5 s")
        );
    }

    #[tokio::test]
    async fn what_a_command_left_behind_may_finish_within_the_grace() {
        let (status, log) = run("(sleep 1; echo late) & echo started").await;
        assert!(status.success());
        assert_eq!(log.last_error_line().as_deref(), Some("late"));
    }

    #[tokio::test]
    async fn output_is_logged_in_order() {
        let (status, log) = run("echo one; echo two >&2; echo three").await;
        assert!(status.success());
        assert_eq!(log.last_error_line().as_deref(), Some("three"));
    }
}
