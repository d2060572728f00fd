//! The API client: authenticated JSON requests, listings across pages, and the API's
//! error format turned into one error type.

use std::time::Duration;

use envplane_core::secrecy::{ExposeSecret, SecretString};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request, in its own words.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the envplane API at {url}: {reason} (check --url or ENVPLANE_URL)")]
    Unreachable { url: Url, reason: String },
    #[error("unexpected answer from {url}: {detail} (is it an envplane API?)")]
    Unexpected { url: Url, detail: String },
    #[error("{0:?} cannot be used as an id or a name")]
    BadPathSegment(String),
}

/// One page of a listing, or every page merged (then `next` is `None`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Listing {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// `--limit`, `--cursor` and `--all` of every list command.
#[derive(Debug, Default, clap::Args)]
pub struct Paging {
    /// Items per page (the API accepts 1 to 500, default 50).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Start at this cursor (the `next` of a previous page).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow the `next` cursors to list everything.
    #[arg(long)]
    pub all: bool,
}

/// `--project` of the listings that can be narrowed to one project.
#[derive(Debug, clap::Args)]
pub struct ProjectFilter {
    /// Only this project's objects.
    #[arg(long = "project", value_name = "ID")]
    project_id: Option<String>,
}

impl ProjectFilter {
    pub fn query(&self) -> Vec<(&str, &str)> {
        self.project_id
            .as_deref()
            .map(|id| ("project_id", id))
            .into_iter()
            .collect()
    }
}

/// The `{"error": {"code", "message"}}` body of every failed request.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

pub struct ApiClient {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
}

impl ApiClient {
    pub fn new(mut base_url: Url, api_key: SecretString) -> anyhow::Result<Self> {
        if !matches!(base_url.scheme(), "http" | "https") {
            anyhow::bail!("the API URL must start with http:// or https://, not {base_url}");
        }
        base_url.set_query(None);
        base_url.set_fragment(None);
        let key = api_key.expose_secret().trim();
        if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
            anyhow::bail!("the API key is empty or has characters no key has");
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("envplane-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base_url,
            api_key: SecretString::from(key),
        })
    }

    pub async fn get(&self, path: &[&str]) -> Result<Value, ClientError> {
        self.get_query(path, &[]).await
    }

    pub async fn get_query(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let url = self.endpoint(path, query)?;
        self.expect_body(Method::GET, url, None::<&()>).await
    }

    pub async fn post(&self, path: &[&str], body: &impl Serialize) -> Result<Value, ClientError> {
        let url = self.endpoint(path, &[])?;
        self.expect_body(Method::POST, url, Some(body)).await
    }

    /// Posts with query parameters; `None` when the API answers without a body.
    pub async fn post_query(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        body: &impl Serialize,
    ) -> Result<Option<Value>, ClientError> {
        let url = self.endpoint(path, query)?;
        self.send(Method::POST, url, Some(body)).await
    }

    pub async fn put(&self, path: &[&str], body: &impl Serialize) -> Result<Value, ClientError> {
        let url = self.endpoint(path, &[])?;
        self.expect_body(Method::PUT, url, Some(body)).await
    }

    pub async fn patch(&self, path: &[&str], body: &impl Serialize) -> Result<Value, ClientError> {
        let url = self.endpoint(path, &[])?;
        self.expect_body(Method::PATCH, url, Some(body)).await
    }

    /// Deletes, answering the object when the API returns one (a revoked key does).
    pub async fn delete(&self, path: &[&str]) -> Result<Option<Value>, ClientError> {
        self.delete_query(path, &[]).await
    }

    pub async fn delete_query(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<Value>, ClientError> {
        let url = self.endpoint(path, query)?;
        self.send(Method::DELETE, url, None::<&()>).await
    }

    /// One page of a listing, or all of them with `--all`.
    pub async fn list(
        &self,
        path: &[&str],
        filters: &[(&str, &str)],
        paging: &Paging,
    ) -> Result<Listing, ClientError> {
        let limit = paging.limit.map(|limit| limit.to_string());
        let mut cursor = paging.cursor.clone();
        let mut items = Vec::new();
        loop {
            let mut query = filters.to_vec();
            if let Some(limit) = &limit {
                query.push(("limit", limit));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor));
            }
            let url = self.endpoint(path, &query)?;
            let value = self
                .expect_body(Method::GET, url.clone(), None::<&()>)
                .await?;
            let page: Listing =
                serde_json::from_value(value).map_err(|error| ClientError::Unexpected {
                    url: url.clone(),
                    detail: format!("not a listing: {error}"),
                })?;
            items.extend(page.items);
            match page.next {
                Some(next) if paging.all => {
                    if cursor.as_deref() == Some(next.as_str()) {
                        return Err(ClientError::Unexpected {
                            url,
                            detail: "the same cursor came back twice".into(),
                        });
                    }
                    cursor = Some(next);
                }
                next => return Ok(Listing { items, next }),
            }
        }
    }

    /// The base URL plus `path`, each part percent-encoded as one segment.
    fn endpoint(&self, path: &[&str], query: &[(&str, &str)]) -> Result<Url, ClientError> {
        let mut url = self.base_url.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .expect("an http(s) URL always has a path");
            segments.pop_if_empty();
            for segment in path {
                if matches!(*segment, "" | "." | "..") {
                    return Err(ClientError::BadPathSegment((*segment).to_string()));
                }
                segments.push(segment);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn expect_body<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Value, ClientError> {
        self.send(method, url.clone(), body)
            .await?
            .ok_or_else(|| ClientError::Unexpected {
                url,
                detail: "an empty answer".into(),
            })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Option<Value>, ClientError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.api_key.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |error: reqwest::Error| ClientError::Unreachable {
            url: self.base_url.clone(),
            reason: root_cause(&error),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        decode(status, &url, &body)
    }
}

/// Reads an answer: the JSON of a success (`None` when empty), or the API's error.
fn decode(status: StatusCode, url: &Url, body: &[u8]) -> Result<Option<Value>, ClientError> {
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        return serde_json::from_slice(body)
            .map(Some)
            .map_err(|error| ClientError::Unexpected {
                url: url.clone(),
                detail: format!(
                    "HTTP {} with a body that is not JSON ({error})",
                    status.as_u16()
                ),
            });
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => Err(ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        }),
        Err(_) => Err(ClientError::Unexpected {
            url: url.clone(),
            detail: format!("HTTP {status} without an envplane error body"),
        }),
    }
}

/// The innermost cause, e.g. "Connection refused (os error 111)", rather than reqwest's
/// generic "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> ApiClient {
        ApiClient::new(base.parse().unwrap(), SecretString::from("epk_test")).unwrap()
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_each_segment() {
        let api = client("https://api.example.com/prod/");
        let url = api.endpoint(&["v1", "projects", "a/b c"], &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/prod/v1/projects/a%2Fb%20c"
        );
        let url = client("http://127.0.0.1:8080")
            .endpoint(
                &["v1", "templates"],
                &[("project_id", "prj_1"), ("limit", "5")],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/v1/templates?project_id=prj_1&limit=5"
        );
        for bad in ["", ".", ".."] {
            assert!(matches!(
                api.endpoint(&["v1", "projects", bad], &[]),
                Err(ClientError::BadPathSegment(_))
            ));
        }
    }

    #[test]
    fn api_errors_read_the_error_body() {
        let url: Url = "http://localhost/v1/projects/x".parse().unwrap();
        let body = br#"{"error":{"code":"not_found","message":"project not found"}}"#;
        let error = decode(StatusCode::NOT_FOUND, &url, body).unwrap_err();
        assert_eq!(error.to_string(), "project not found (not_found, HTTP 404)");
        let error = decode(StatusCode::BAD_GATEWAY, &url, b"<html>").unwrap_err();
        assert!(error.to_string().contains("HTTP 502"), "{error}");
    }

    #[test]
    fn successes_may_be_empty() {
        let url: Url = "http://localhost/v1/projects/x".parse().unwrap();
        assert!(decode(StatusCode::NO_CONTENT, &url, b"").unwrap().is_none());
        let value = decode(StatusCode::OK, &url, br#"{"id":"x"}"#).unwrap();
        assert_eq!(value.unwrap()["id"], "x");
        assert!(decode(StatusCode::OK, &url, b"not json").is_err());
    }

    #[test]
    fn keys_must_be_printable() {
        let url: Url = "http://localhost".parse().unwrap();
        assert!(ApiClient::new(url.clone(), SecretString::from("  ")).is_err());
        assert!(ApiClient::new(url.clone(), SecretString::from("a\nb")).is_err());
        assert!(ApiClient::new("ftp://x".parse().unwrap(), SecretString::from("k")).is_err());
        assert!(ApiClient::new(url, SecretString::from("epk_abc\n")).is_ok());
    }
}
