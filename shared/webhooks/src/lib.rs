//! Notifications leave the platform here. Each delivery resolves the target's host
//! itself, refuses it when no address it resolves to is public (unless the operator
//! allows private targets), and connects to the address it checked, so a name that
//! resolves to a public address when the target is saved and to the metadata service
//! later (DNS rebinding) reaches nothing. No redirect is followed; every call ends
//! within [`TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use envplane_core::notification::{is_public, TargetUrl};
use envplane_core::ports::{NotificationSender, SendError};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

/// The longest a target may take to answer: a slow target is tried again later.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpSender {
    allow_private: bool,
    timeout: Duration,
}

impl HttpSender {
    /// `allow_private`: targets on private, loopback or link-local addresses are
    /// called too (the operator's own network; tests).
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            timeout: TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// An address of the target's host the platform may call.
    async fn address(&self, url: &TargetUrl) -> Result<SocketAddr, SendError> {
        let host = url.host().trim_start_matches('[').trim_end_matches(']');
        let resolved = tokio::net::lookup_host((host, url.port()))
            .await
            .map_err(|error| SendError::Retry(format!("{host} did not resolve: {error}")))?;
        let mut seen = false;
        for address in resolved {
            seen = true;
            if self.allow_private || is_public(address.ip()) {
                return Ok(address);
            }
        }
        if !seen {
            return Err(SendError::Retry(format!("{host} resolved to no address")));
        }
        Err(SendError::Refused(format!(
            "{host} resolves only to private, loopback or link-local addresses"
        )))
    }
}

#[async_trait]
impl NotificationSender for HttpSender {
    async fn post(
        &self,
        url: &TargetUrl,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(), SendError> {
        let address = self.address(url).await?;
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(self.timeout)
            .user_agent("envplane-notifications")
            .resolve(url.host(), address)
            .build()
            .map_err(|error| SendError::Retry(format!("no HTTP client: {error}")))?;
        let mut request = client.post(url.as_str()).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // Errors name the origin only: a Slack URL's path is a credential.
        let origin = url.origin();
        let answer = request.send().await.map_err(|error| {
            let what = if error.is_timeout() {
                "timed out"
            } else {
                "could not be reached"
            };
            SendError::Retry(format!("{origin} {what}"))
        })?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT =>
            {
                Err(SendError::Retry(format!("{origin} answered {status}")))
            }
            status => Err(SendError::Refused(format!("{origin} answered {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode as AxumStatus;

    use super::*;

    /// A target on loopback answering `statuses` in turn (then 200), after `delay`.
    async fn target(statuses: Vec<u16>, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let calls = counted.clone();
                let statuses = statuses.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    let call = calls.fetch_add(1, Ordering::SeqCst);
                    let code = statuses.get(call).copied().unwrap_or(200);
                    AxumStatus::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    async fn post(sender: &HttpSender, url: &str) -> Result<(), SendError> {
        let url = TargetUrl::parse(url, true).unwrap();
        sender
            .post(&url, vec![("x-test", "1".into())], b"{}".to_vec())
            .await
    }

    #[tokio::test]
    async fn answers_say_whether_to_try_again() {
        let (url, calls) = target(vec![500, 429, 404], Duration::ZERO).await;
        let sender = HttpSender::new(true);
        assert!(matches!(
            post(&sender, &url).await,
            Err(SendError::Retry(_))
        ));
        assert!(matches!(
            post(&sender, &url).await,
            Err(SendError::Retry(_))
        ));
        assert!(matches!(
            post(&sender, &url).await,
            Err(SendError::Refused(_))
        ));
        assert!(post(&sender, &url).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_slow_target_times_out_to_be_tried_again() {
        let (url, _) = target(vec![], Duration::from_secs(5)).await;
        let sender = HttpSender::new(true).with_timeout(Duration::from_millis(200));
        let error = post(&sender, &url).await.unwrap_err();
        assert!(
            matches!(error, SendError::Retry(ref m) if m.contains("timed out")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_the_operator_allows_it() {
        let (url, calls) = target(vec![], Duration::ZERO).await;
        let url = TargetUrl::parse(&url, true).unwrap();
        let strict = HttpSender::new(false);
        let refused = strict.post(&url, vec![], Vec::new()).await;
        assert!(matches!(refused, Err(SendError::Refused(_))), "{refused:?}");
        // A name that resolves to loopback is refused the same way.
        let named =
            TargetUrl::parse(&url.as_str().replace("127.0.0.1", "localhost"), true).unwrap();
        let refused = strict.post(&named, vec![], Vec::new()).await;
        assert!(matches!(refused, Err(SendError::Refused(_))), "{refused:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing reached the target"
        );
    }
}
