//! The runner's calls to the platform, each retried across network blips: a sandbox
//! must not fail a deployment because one request was lost.

use std::time::Duration;

use envplane_core::deployment::{
    LogChunkInput, PhaseReport, PlanView, Session, StepReport, StepStatus,
};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde::Serialize;

const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the runner tells the platform it is alive: the watchdog fails a phase
/// whose runner stays silent for minutes.
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the platform refused the request: HTTP {status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the platform could not be reached after {ATTEMPTS} attempts: {0}")]
    Unreachable(String),
}

/// The runner's heartbeats; they stop when this is dropped.
pub struct Heartbeats(tokio::task::JoinHandle<()>);

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: Client,
    base_url: String,
    token: String,
}

impl ApiClient {
    pub fn new(base_url: &str, token: String) -> Result<Self, ClientError> {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn state_address(&self, environment_id: &str) -> String {
        format!("{}/v1/state/{environment_id}", self.base_url)
    }

    /// Trades the launch credential (this client's) for the session: the job, and a
    /// client that calls with the runner's own credential from then on. The trade works
    /// once: a retry after a lost answer is refused, and the phase fails.
    pub async fn start_session(&self) -> Result<(ApiClient, Session), ClientError> {
        let response = self
            .send(|| self.request(Method::POST, "/v1/runner/session"))
            .await?;
        let session: Session = response
            .json()
            .await
            .map_err(|e| ClientError::Unreachable(format!("the session could not be read: {e}")))?;
        let client = ApiClient {
            token: session.runner_token.clone(),
            ..self.clone()
        };
        Ok((client, session))
    }

    pub async fn logs(&self, chunks: &[LogChunkInput]) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Batch<'a> {
            chunks: &'a [LogChunkInput],
        }
        let batch = Batch { chunks };
        self.send(|| self.request(Method::POST, "/v1/runner/logs").json(&batch))
            .await
            .map(drop)
    }

    pub async fn step(&self, name: &str, status: StepStatus) -> Result<(), ClientError> {
        let report = StepReport {
            name: name.to_string(),
            status,
        };
        self.send(|| self.request(Method::POST, "/v1/runner/steps").json(&report))
            .await
            .map(drop)
    }

    /// Sends a heartbeat now and every [`HEARTBEAT_PERIOD`] until the returned guard
    /// is dropped. A failed one is logged: the next may get through.
    pub fn keep_alive(&self) -> Heartbeats {
        let client = self.clone();
        Heartbeats(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_PERIOD);
            loop {
                ticks.tick().await;
                if let Err(error) = client
                    .send(|| client.request(Method::POST, "/v1/runner/heartbeat"))
                    .await
                {
                    eprintln!("envplane-runner: a heartbeat failed: {error}");
                }
            }
        }))
    }

    pub async fn put_plan(&self, plan: Vec<u8>) -> Result<(), ClientError> {
        self.send(|| {
            self.request(Method::PUT, "/v1/runner/plan")
                .body(plan.clone())
        })
        .await
        .map(drop)
    }

    pub async fn put_plan_view(&self, view: &PlanView) -> Result<(), ClientError> {
        self.send(|| self.request(Method::PUT, "/v1/runner/plan-view").json(view))
            .await
            .map(drop)
    }

    pub async fn get_plan(&self) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(|| self.request(Method::GET, "/v1/runner/plan"))
            .await?;
        response
            .bytes()
            .await
            .map(|bytes| bytes.to_vec())
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }

    pub async fn finish(&self, report: &PhaseReport) -> Result<(), ClientError> {
        self.send(|| self.request(Method::POST, "/v1/runner/finish").json(report))
            .await
            .map(drop)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
    }

    /// Sends with exponential backoff on network errors and 5xx; a 4xx is final.
    async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            match build().send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let message = response.text().await.unwrap_or_default();
                    return Err(ClientError::Refused { status, message });
                }
                Ok(response) => last_error = format!("HTTP {}", response.status()),
                Err(error) => last_error = error.without_url().to_string(),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        Err(ClientError::Unreachable(last_error))
    }
}
