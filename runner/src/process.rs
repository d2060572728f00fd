//! Running the step commands (git, hooks, Terraform): output merged into one ordered,
//! masked stream; an interrupt of the runner becomes exactly one SIGINT to the command,
//! so Terraform can release its state lock and save state before it exits.

use std::io::Read;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

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
    let (mut reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_for_stderr))
        .process_group(0);
    let mut child = command.spawn().map_err(spawn_error)?;
    // The command's copies of the pipe's write end are the only ones left.
    drop(command);
    let (chunks, mut received) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let pump = tokio::task::spawn_blocking(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = reader.read(&mut buffer) {
            if read == 0 || chunks.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let mut interrupt = interrupt.0.clone();
    let mut interrupted = *interrupt.borrow();
    if interrupted {
        signal(group);
    }
    let status = loop {
        tokio::select! {
            Some(bytes) = received.recv() => log.push(&bytes),
            status = child.wait() => break status.map_err(spawn_error)?,
            changed = interrupt.changed(), if !interrupted => {
                if changed.is_ok() && *interrupt.borrow() {
                    interrupted = true;
                    signal(group);
                }
            }
        }
    };
    let _ = pump.await;
    while let Ok(bytes) = received.try_recv() {
        log.push(&bytes);
    }
    Ok(status)
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
