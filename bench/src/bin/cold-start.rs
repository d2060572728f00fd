//! Cold start of a Lambda binary, measured locally: from process start to its first
//! request to the Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`), served
//! here by a minimal emulator on loopback. The process is killed at that point: what is
//! measured is init, not an invocation.
//!
//! Usage: cold-start RUNS BINARY [NAME=VALUE ...]   (prints median, p90, min in ms)

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().context("RUNS missing")?.parse()?;
    let binary = args.next().context("BINARY missing")?;
    let environment: Vec<(String, String)> = args
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .context("environment entries are NAME=VALUE")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(init_time(&binary, &environment).await?);
    }
    samples.sort();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "{binary}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms over {runs} runs",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[0])
    );
    Ok(())
}

/// Starts the binary against a fresh emulator and waits for its first `next` request.
async fn init_time(binary: &str, environment: &[(String, String)]) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(environment.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "cold-start")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let first_request = async {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = [0u8; 512];
        let read = stream.read(&mut buffer).await?;
        anyhow::Ok((
            Instant::now(),
            String::from_utf8_lossy(&buffer[..read]).into_owned(),
        ))
    };
    let (at, request) = tokio::select! {
        request = first_request => request?,
        status = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).await?;
            }
            bail!("{binary} exited during init ({}): {stderr}", status?);
        }
    };
    child.kill().await?;
    if !request.starts_with("GET /2018-06-01/runtime/invocation/next") {
        bail!("unexpected first request: {request}");
    }
    Ok(at - started)
}
