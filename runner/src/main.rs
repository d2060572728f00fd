//! `envplane-runner`: runs one deployment phase inside its sandbox. Configured only by
//! its environment: the deployment id, the API URL (or the API socket, in a sandbox
//! with a network of its own) and a token for this phase alone.

use std::path::PathBuf;
use std::process::ExitCode;

use envplane_runner::client::ApiClient;
use envplane_runner::deploy::{self, Context};
use envplane_runner::logs::LogShipper;
use envplane_runner::process::Interrupt;

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("missing configuration: set {name}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("envplane-runner: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let api_url = match std::env::var_os("ENVPLANE_API_SOCKET") {
        Some(socket) => envplane_runner::api_socket::forward(socket.into())
            .await
            .map_err(|e| format!("cannot reach the API socket: {e}"))?,
        None => required("ENVPLANE_API_URL")?,
    };
    let launch_token = required("ENVPLANE_RUNNER_TOKEN")?;
    let deployment_id = required("ENVPLANE_DEPLOYMENT_ID")?;
    let tools_dir = std::env::var_os("ENVPLANE_TOOLS_DIR").map(PathBuf::from);
    let work_dir = std::env::current_dir().map_err(|e| format!("no work directory: {e}"))?;
    // Template code runs as this process's user: it must not read this process's
    // memory or environment (the runner's credential is there).
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("cannot keep the runner's memory private: {e}"))?;
    let interrupt = Interrupt::listen().map_err(|e| format!("cannot listen for signals: {e}"))?;
    let launch = ApiClient::new(&api_url, launch_token.clone()).map_err(|e| e.to_string())?;
    let (client, session) = launch
        .start_session()
        .await
        .map_err(|e| format!("cannot fetch the job: {e}"))?;
    let _heartbeats = client.keep_alive();
    let job = session.job;
    if job.deployment_id != deployment_id {
        return Err("the job is for another deployment".into());
    }
    let tokens = [
        launch_token,
        session.runner_token,
        session.state_token.clone(),
    ];
    let secrets = deploy::secrets(&job, &tokens);
    let (shipper, shipping) = LogShipper::start(client.clone(), secrets.clone());
    let context = Context {
        client: client.clone(),
        shipper: shipper.clone(),
        interrupt,
        job,
        state_token: session.state_token,
        secrets,
        work_dir,
        tools_dir,
    };
    let report = deploy::run(&context).await;
    drop(context);
    shipper.flush().await;
    drop(shipper);
    let _ = shipping.await;
    client
        .finish(&report)
        .await
        .map_err(|e| format!("cannot report the result: {e}"))
}
