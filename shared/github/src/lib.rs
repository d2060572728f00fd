//! The Vcs port over GitHub's REST API: installation tokens minted with an RS256 App
//! JWT (cached until shortly before they expire), changed files across pages,
//! comments, commit statuses and collaborator permissions. Calls GitHub may answer
//! later (5xx, rate limits) are retried with backoff.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use envplane_core::ports::{
    CommitState, CommitStatus, RepositoryPermission, Vcs, VcsAuth, VcsError,
};
use envplane_core::secrecy::{ExposeSecret, SecretString};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// Tries of one call, the first included.
const ATTEMPTS: u32 = 4;
/// The first retry's wait; each next one is four times longer (0.25 s, 1 s, 4 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait a `Retry-After` may ask for before the call gives up instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// An installation token is used until this long before it expires.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Files per page of a pull request's changed files (GitHub's most).
const FILES_PER_PAGE: usize = 100;

pub struct GitHubApi {
    base_url: String,
    /// Built on first use: a function that never calls GitHub pays nothing at start.
    client: OnceLock<reqwest::Client>,
    /// Installation tokens by installation id.
    tokens: Mutex<HashMap<u64, (SecretString, DateTime<Utc>)>>,
}

impl GitHubApi {
    /// `base_url`: `https://api.github.com`, or a GitHub Enterprise Server's API.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            client: OnceLock::new(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent("envplane")
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a default HTTPS client builds")
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The credential API calls go with: the token, or the installation's token.
    async fn bearer(&self, auth: &VcsAuth) -> Result<SecretString, VcsError> {
        match auth {
            VcsAuth::Token(token) => Ok(token.clone()),
            VcsAuth::App {
                app_id,
                installation_id,
                private_key,
            } => {
                self.installation_token(*app_id, *installation_id, private_key)
                    .await
            }
        }
    }

    async fn installation_token(
        &self,
        app_id: u64,
        installation_id: u64,
        private_key: &SecretString,
    ) -> Result<SecretString, VcsError> {
        if let Some((token, expires_at)) = self.cached(installation_id) {
            if expires_at - TOKEN_MARGIN > Utc::now() {
                return Ok(token);
            }
        }
        let jwt = SecretString::from(app_jwt(app_id, private_key)?);
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let response = self.send(Method::POST, &path, &jwt, None).await?;
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let minted: Minted = read_json(response).await?;
        let token = SecretString::from(minted.token);
        self.tokens
            .lock()
            .expect("the token cache is never poisoned")
            .insert(installation_id, (token.clone(), minted.expires_at));
        Ok(token)
    }

    fn cached(&self, installation_id: u64) -> Option<(SecretString, DateTime<Utc>)> {
        self.tokens
            .lock()
            .expect("the token cache is never poisoned")
            .get(&installation_id)
            .cloned()
    }

    /// One call, tried again while GitHub answers 5xx or a rate limit; a refusal (any
    /// other 4xx) comes back at once.
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: &SecretString,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, VcsError> {
        let url = self.url(path);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let request = self.request(method.clone(), &url, bearer, body);
            let wait = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                    return Err(VcsError::NotFound)
                }
                Ok(response) => match retry_wait(&response, attempt) {
                    Some(wait) => {
                        last = format!("{} {path} answered {}", method, response.status());
                        wait
                    }
                    None => {
                        return Err(VcsError::Refused(format!(
                            "{method} {path} answered {}",
                            response.status()
                        )))
                    }
                },
                Err(error) => {
                    last = format!("{method} {path} failed: {}", error.without_url());
                    backoff(attempt)
                }
            };
            if attempt + 1 < ATTEMPTS {
                tracing::warn!(%last, ?wait, "GitHub did not answer; trying again");
                tokio::time::sleep(wait).await;
            }
        }
        Err(VcsError::Unavailable(last))
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        bearer: &SecretString,
        body: Option<&serde_json::Value>,
    ) -> RequestBuilder {
        let request = self
            .client()
            .request(method, url)
            .bearer_auth(bearer.expose_secret())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    async fn call(
        &self,
        auth: &VcsAuth,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, VcsError> {
        let bearer = self.bearer(auth).await?;
        self.send(method, path, &bearer, body.as_ref()).await
    }
}

/// How long to wait before trying again, when trying again may help: a 5xx, a 429, or
/// a 403 that says the rate limit is used up (`Retry-After`, `x-ratelimit-remaining: 0`).
fn retry_wait(response: &Response, attempt: u32) -> Option<Duration> {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (retry_after.is_some() || header("x-ratelimit-remaining") == Some("0")));
    if !(status.is_server_error() || rate_limited) {
        return None;
    }
    match retry_after.map(Duration::from_secs) {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => Some(wait.max(backoff(attempt))),
        None => Some(backoff(attempt)),
    }
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF * 4u32.pow(attempt.min(3))
}

async fn read_json<T: for<'de> Deserialize<'de>>(response: Response) -> Result<T, VcsError> {
    response
        .json()
        .await
        .map_err(|e| VcsError::Unavailable(format!("GitHub's answer could not be read: {e}")))
}

/// The JWT a GitHub App signs to ask for installation tokens: issued a minute ago (for
/// clock drift), valid nine minutes (GitHub takes at most ten).
fn app_jwt(app_id: u64, private_key: &SecretString) -> Result<String, VcsError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
        .map_err(|_| {
            VcsError::Refused("the GitHub App's private key is not an RSA key in PEM".into())
        })?;
    let now = Utc::now().timestamp();
    let claims = json!({ "iat": now - 60, "exp": now + 9 * 60, "iss": app_id.to_string() });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| VcsError::Refused(format!("the App JWT could not be signed: {e}")))
}

/// `owner/name` as a path: each part only of what GitHub allows in names, so a name
/// from a payload cannot reach another route.
fn repository_path(repository: &str) -> Result<String, VcsError> {
    let safe = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repository.split_once('/') {
        Some((owner, name)) if safe(owner) && safe(name) => Ok(format!("/repos/{owner}/{name}")),
        _ => Err(VcsError::Refused(format!(
            "{repository:?} is not an owner/name repository"
        ))),
    }
}

#[async_trait]
impl Vcs for GitHubApi {
    async fn changed_files(
        &self,
        auth: &VcsAuth,
        repository: &str,
        number: u64,
    ) -> Result<Vec<String>, VcsError> {
        #[derive(Deserialize)]
        struct File {
            filename: String,
            previous_filename: Option<String>,
        }
        let repo = repository_path(repository)?;
        let mut files = Vec::new();
        for page in 1.. {
            let path = format!("{repo}/pulls/{number}/files?per_page={FILES_PER_PAGE}&page={page}");
            let response = self.call(auth, Method::GET, &path, None).await?;
            let batch: Vec<File> = read_json(response).await?;
            let last = batch.len() < FILES_PER_PAGE;
            for file in batch {
                files.push(file.filename);
                // A rename touches where the file was, too.
                files.extend(file.previous_filename);
            }
            if last {
                break;
            }
        }
        Ok(files)
    }

    async fn create_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        number: u64,
        body: &str,
    ) -> Result<u64, VcsError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let path = format!("{}/issues/{number}/comments", repository_path(repository)?);
        let response = self
            .call(auth, Method::POST, &path, Some(json!({ "body": body })))
            .await?;
        Ok(read_json::<Created>(response).await?.id)
    }

    async fn edit_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<(), VcsError> {
        let path = format!(
            "{}/issues/comments/{comment_id}",
            repository_path(repository)?
        );
        self.call(auth, Method::PATCH, &path, Some(json!({ "body": body })))
            .await?;
        Ok(())
    }

    async fn delete_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        comment_id: u64,
    ) -> Result<(), VcsError> {
        let path = format!(
            "{}/issues/comments/{comment_id}",
            repository_path(repository)?
        );
        match self.call(auth, Method::DELETE, &path, None).await {
            Ok(_) | Err(VcsError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn set_status(
        &self,
        auth: &VcsAuth,
        repository: &str,
        commit: &str,
        status: &CommitStatus,
    ) -> Result<(), VcsError> {
        if !commit.chars().all(|c| c.is_ascii_hexdigit()) || commit.is_empty() {
            return Err(VcsError::Refused(format!("{commit:?} is not a commit")));
        }
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        };
        let path = format!("{}/statuses/{commit}", repository_path(repository)?);
        let body = json!({
            "state": state,
            "context": status.context,
            "description": status.description,
            "target_url": status.target_url,
        });
        self.call(auth, Method::POST, &path, Some(body)).await?;
        Ok(())
    }

    async fn permission(
        &self,
        auth: &VcsAuth,
        repository: &str,
        user: &str,
    ) -> Result<RepositoryPermission, VcsError> {
        #[derive(Deserialize)]
        struct Answer {
            permission: String,
            role_name: Option<String>,
        }
        if !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || user.is_empty() {
            return Ok(RepositoryPermission::None);
        }
        let path = format!(
            "{}/collaborators/{user}/permission",
            repository_path(repository)?
        );
        let answer: Answer = match self.call(auth, Method::GET, &path, None).await {
            Ok(response) => read_json(response).await?,
            Err(VcsError::NotFound) => return Ok(RepositoryPermission::None),
            Err(error) => return Err(error),
        };
        // `role_name` tells maintain and triage apart; `permission` is the older view.
        Ok(
            match answer.role_name.as_deref().unwrap_or(&answer.permission) {
                "admin" => RepositoryPermission::Admin,
                "maintain" => RepositoryPermission::Maintain,
                "write" => RepositoryPermission::Write,
                "triage" => RepositoryPermission::Triage,
                "read" => RepositoryPermission::Read,
                _ => RepositoryPermission::None,
            },
        )
    }

    async fn clone_token(&self, auth: &VcsAuth, _: &str) -> Result<SecretString, VcsError> {
        self.bearer(auth).await
    }
}
