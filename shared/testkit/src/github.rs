//! A fake GitHub API on loopback: installation tokens, a pull request's changed files
//! (paginated), comments, commit statuses and collaborator permissions. It records every
//! call and can fail the next calls on demand (a 500, or a 403 rate limit).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A private key for the fake's GitHub App (made for these tests; it signs nothing else).
pub const APP_PRIVATE_KEY: &str = include_str!("fake-github-app.pem");

/// One call the fake answered (or failed on purpose).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub repository: String,
    pub number: u64,
    pub body: String,
}

#[derive(Default)]
struct Fake {
    calls: Vec<Call>,
    files: HashMap<(String, u64), Vec<String>>,
    comments: BTreeMap<u64, Comment>,
    statuses: Vec<(String, String, Value)>,
    permissions: HashMap<String, String>,
    failures: VecDeque<StatusCode>,
    minted: u64,
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    fake: Arc<Mutex<Fake>>,
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Mutex::new(Fake::default()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, fake }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Fake) -> T) -> T {
        f(&mut self.fake.lock().unwrap())
    }

    /// What the pull request changes.
    pub fn set_files(&self, repository: &str, number: u64, files: &[&str]) {
        let files = files.iter().map(|f| f.to_string()).collect();
        self.with(|fake| fake.files.insert((repository.into(), number), files));
    }

    /// `user`'s permission on every repository: `admin`, `write`, `read`, ...
    pub fn set_permission(&self, user: &str, permission: &str) {
        self.with(|fake| fake.permissions.insert(user.into(), permission.into()));
    }

    /// The next `count` calls answer `status` (a 403 says the rate limit is used up).
    pub fn fail_next(&self, count: usize, status: u16) {
        let status = StatusCode::from_u16(status).unwrap();
        self.with(|fake| fake.failures.extend(std::iter::repeat_n(status, count)));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|fake| fake.calls.clone())
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.with(|fake| fake.comments.values().cloned().collect())
    }

    /// Every status set, in order: (repository, commit, body).
    pub fn statuses(&self) -> Vec<(String, String, Value)> {
        self.with(|fake| fake.statuses.clone())
    }
}

async fn answer(State(fake): State<Arc<Mutex<Fake>>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).to_string();
    let mut fake = fake.lock().unwrap();
    fake.calls.push(Call {
        method: method.to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if let Some(status) = fake.failures.pop_front() {
        let mut response = (status, Json(json!({"message": "failing on purpose"}))).into_response();
        if status == StatusCode::FORBIDDEN {
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
            headers.insert("retry-after", "1".parse().unwrap());
        }
        return response;
    }
    let (route, query) = path.split_once('?').unwrap_or((&path, ""));
    let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    match (&method, parts.as_slice()) {
        (&Method::POST, ["app", "installations", _, "access_tokens"]) => {
            if !authorization.starts_with("Bearer ey") {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            fake.minted += 1;
            let expires_at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
            let token = format!("ghs_fake_installation_token_{}", fake.minted);
            (
                StatusCode::CREATED,
                Json(json!({ "token": token, "expires_at": expires_at })),
            )
                .into_response()
        }
        (&Method::GET, ["repos", owner, name, "pulls", number, "files"]) => {
            let key = (format!("{owner}/{name}"), number.parse().unwrap_or(0));
            let files = fake.files.get(&key).cloned().unwrap_or_default();
            let number_of = |key: &str| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(key))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let per_page = number_of("per_page=").unwrap_or(30).min(100);
            let page = number_of("page=").unwrap_or(1).max(1);
            let items: Vec<Value> = files
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|f| json!({ "filename": f, "status": "modified" }))
                .collect();
            Json(Value::Array(items)).into_response()
        }
        (&Method::POST, ["repos", owner, name, "issues", number, "comments"]) => {
            let id = 1000 + fake.comments.len() as u64 + fake.calls.len() as u64;
            let comment = Comment {
                repository: format!("{owner}/{name}"),
                number: number.parse().unwrap_or(0),
                body: body["body"].as_str().unwrap_or("").to_string(),
            };
            fake.comments.insert(id, comment);
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        (&Method::PATCH, ["repos", _, _, "issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match fake.comments.get_mut(&id) {
                Some(comment) => {
                    comment.body = body["body"].as_str().unwrap_or("").to_string();
                    Json(json!({ "id": id })).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        (&Method::DELETE, ["repos", _, _, "issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match fake.comments.remove(&id) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        (&Method::POST, ["repos", owner, name, "statuses", sha]) => {
            let entry = (format!("{owner}/{name}"), sha.to_string(), body);
            fake.statuses.push(entry);
            StatusCode::CREATED.into_response()
        }
        (&Method::GET, ["repos", _, _, "collaborators", user, "permission"]) => {
            let permission = fake
                .permissions
                .get(*user)
                .cloned()
                .unwrap_or_else(|| "none".into());
            Json(json!({ "permission": permission, "role_name": permission })).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
