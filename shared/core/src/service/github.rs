//! GitHub: an organization's connection, the webhooks it sends, and the report each
//! planned pull request gets (one comment, a commit status per environment).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Role};
use crate::deployment::{Action, Deployment, DeploymentStatus, JobVariable, Trigger};
use crate::github::{
    comment_command, render_comment, signature_matches, status_description, CommentCommand,
    CommentSection, Event, IssueCommentEvent, PullRequestEvent, PushEvent, Repository,
    WatchedPaths, COMMAND_HELP,
};
use crate::model::{Environment, GitHubConnection, PutGitHubConnection, Template, VariableKind};
use crate::ports::{
    CommitState, CommitStatus, Kind, ListQuery, ReportRequest, RepositoryPermission, StoreError,
    VcsAuth, VcsError, WriteOp, MAX_COMMIT_WRITES,
};
use crate::validate::{CLONE_CREDENTIAL_VARIABLES, GIT_TOKEN_VARIABLE};
use crate::{Error, Result};

use super::deployments::queued_insert;
use super::{decode, record, retrying_conflicts, Loaded, Platform, Stored, MAX_PAGE_SIZE};

/// The one GitHub connection of an organization is stored under this id.
const CONNECTION_ID: &str = "github";
/// How long a handled delivery's id is kept: GitHub redelivers for three days.
const DELIVERY_DAYS: i64 = 7;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredConnection {
    app_id: Option<u64>,
    installation_id: Option<u64>,
    sealed_private_key: Option<String>,
    sealed_token: Option<String>,
    sealed_webhook_secret: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Stored for StoredConnection {
    const KIND: Kind = Kind::VcsConnection;
    const NOUN: &'static str = "GitHub connection";
}

impl StoredConnection {
    fn view(&self) -> GitHubConnection {
        GitHubConnection {
            mode: if self.app_id.is_some() {
                "app"
            } else {
                "token"
            }
            .into(),
            app_id: self.app_id,
            installation_id: self.installation_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// An App connection is found by its App id: webhooks of an App name it in a header.
fn app_key(app_id: u64) -> String {
    format!("github-app:{app_id}")
}

/// A handled webhook delivery; its id is the delivery's.
#[derive(Debug, Serialize, Deserialize)]
struct HandledDelivery {
    event: String,
    at: DateTime<Utc>,
}

impl Stored for HandledDelivery {
    const KIND: Kind = Kind::WebhookDelivery;
    const NOUN: &'static str = "webhook delivery";
}

/// A pull request envplane plans: where its comment is, and each environment's latest
/// plan of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PullRequestRecord {
    repository: String,
    number: u64,
    head_commit: String,
    /// The pull request's `updated_at` in the delivery that set `head_commit`.
    #[serde(default)]
    head_changed_at: Option<DateTime<Utc>>,
    comment_id: Option<u64>,
    /// Environment id to its latest plan of this pull request.
    plans: BTreeMap<String, PlannedEnvironment>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedEnvironment {
    environment_name: String,
    deployment_id: String,
}

impl Stored for PullRequestRecord {
    const KIND: Kind = Kind::PullRequest;
    const NOUN: &'static str = "pull request";
}

fn pull_request_id(repository: &Repository, number: u64) -> String {
    format!("gh-{}-{number}", repository.id)
}

/// A webhook request as it arrived, before anything in it is trusted.
pub struct WebhookDelivery<'a> {
    /// `X-GitHub-Event`.
    pub event: &'a str,
    /// `X-GitHub-Delivery`.
    pub delivery_id: &'a str,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    /// `X-GitHub-Hook-Installation-Target-ID` when the target type is `integration`:
    /// the App the webhook belongs to.
    pub app_id: Option<u64>,
    /// `?organization=` on the webhook URL: how a token connection's webhooks are found.
    pub organization: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a verified webhook came to.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Nothing to do: an event or action envplane does not use, or nothing it concerns.
    Ignored,
    /// This delivery was handled before.
    Duplicate,
    /// The deployments it queued.
    Queued(Vec<String>),
}

/// An organization's connection, opened for one webhook or report.
struct Connection {
    org_id: String,
    stored: StoredConnection,
    auth: VcsAuth,
}

/// One environment a change may concern.
struct Candidate {
    environment: Environment,
    template: Template,
}

impl Platform {
    /// Connects the organization to GitHub (admins). Secrets are sealed and never shown.
    pub async fn put_github_connection(
        &self,
        caller: &Caller,
        input: PutGitHubConnection,
    ) -> Result<GitHubConnection> {
        caller.require(Role::Admin, None)?;
        let input = input.checked()?;
        let org_id = &caller.org_id;
        let now = self.now();
        let existing = self.find::<StoredConnection>(org_id, CONNECTION_ID).await?;
        let stored = StoredConnection {
            app_id: input.app_id,
            installation_id: input.installation_id,
            sealed_private_key: self
                .seal_optional(org_id, input.private_key.as_ref())
                .await?,
            sealed_token: self.seal_optional(org_id, input.token.as_ref()).await?,
            sealed_webhook_secret: self.key_ring.seal(org_id, &input.webhook_secret).await?,
            created_at: existing.as_ref().map_or(now, |e| e.value.created_at),
            updated_at: now,
        };
        let unique_key = stored.app_id.map(app_key);
        let op = match existing {
            Some(mut loaded) => {
                loaded.value = stored.clone();
                loaded.replace_with_unique_key(unique_key)?
            }
            None => WriteOp::Insert(record(org_id, CONNECTION_ID, None, unique_key, &stored)?),
        };
        self.commit_audited(
            caller,
            "vcs_connection.put",
            (Kind::VcsConnection, CONNECTION_ID),
            vec![op],
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict => Error::conflict(
                "this GitHub App is connected to another organization, or the connection changed meanwhile",
            ),
            other => Error::Store(other),
        })?;
        Ok(stored.view())
    }

    async fn seal_optional(
        &self,
        org_id: &str,
        secret: Option<&SecretString>,
    ) -> Result<Option<String>> {
        Ok(match secret {
            Some(secret) => Some(self.key_ring.seal(org_id, secret).await?),
            None => None,
        })
    }

    pub async fn get_github_connection(&self, caller: &Caller) -> Result<GitHubConnection> {
        caller.require(Role::Admin, None)?;
        Ok(self
            .load::<StoredConnection>(&caller.org_id, CONNECTION_ID)
            .await?
            .value
            .view())
    }

    pub async fn delete_github_connection(&self, caller: &Caller) -> Result<()> {
        caller.require(Role::Admin, None)?;
        let loaded = self
            .load::<StoredConnection>(&caller.org_id, CONNECTION_ID)
            .await?;
        self.commit_audited(
            caller,
            "vcs_connection.delete",
            (Kind::VcsConnection, CONNECTION_ID),
            vec![loaded.delete()],
        )
        .await
        .map_err(super::changed_meanwhile)
    }

    /// Handles a GitHub webhook: nothing in it is read before its signature is checked
    /// against the connection's secret, and each delivery is acted on once.
    pub async fn github_webhook(&self, delivery: WebhookDelivery<'_>) -> Result<WebhookOutcome> {
        let connection = self.webhook_connection(&delivery).await?;
        let secret = self
            .key_ring
            .open(&connection.org_id, &connection.stored.sealed_webhook_secret)
            .await?;
        if !signature_matches(
            secret.expose_secret().as_bytes(),
            delivery.body,
            delivery.signature,
        ) {
            return Err(Error::Unverified(
                "the webhook signature (X-Hub-Signature-256) does not match",
            ));
        }
        let delivery_id = checked_delivery_id(delivery.delivery_id)?;
        let event = Event::parse(delivery.event, delivery.body)?;
        if matches!(event, Event::Ignored) {
            return Ok(WebhookOutcome::Ignored);
        }
        if let Some(installation_id) = connection.stored.installation_id {
            // Another account's installation of the same App is not this organization's.
            if event.installation() != Some(installation_id) {
                return Ok(WebhookOutcome::Ignored);
            }
        }
        if self
            .find::<HandledDelivery>(&connection.org_id, delivery_id)
            .await?
            .is_some()
        {
            return Ok(WebhookOutcome::Duplicate);
        }
        let handled = Handled {
            delivery_id,
            event: delivery.event,
        };
        match event {
            Event::PullRequest(event) => {
                self.pull_request_event(&connection, handled, &event).await
            }
            Event::Push(event) => self.push_event(&connection, handled, &event).await,
            Event::IssueComment(event) => self.comment_event(&connection, handled, &event).await,
            Event::Ignored => Ok(WebhookOutcome::Ignored),
        }
    }

    /// The connection a webhook names: an App's by its id, a token connection's by the
    /// organization in the URL. None: 401, as for a wrong signature.
    async fn webhook_connection(&self, delivery: &WebhookDelivery<'_>) -> Result<Connection> {
        const UNKNOWN: &str = "no GitHub connection matches this webhook";
        let found = match (delivery.app_id, delivery.organization) {
            (Some(app_id), _) => self
                .store
                .find_unique(Kind::VcsConnection, &app_key(app_id))
                .await?
                .map(|record| (record.org_id.clone(), record)),
            (None, Some(org_id)) if crate::validate::CURSOR.matches(org_id) => self
                .store
                .get(Kind::VcsConnection, org_id, CONNECTION_ID)
                .await?
                .map(|record| (org_id.to_string(), record)),
            _ => None,
        };
        let Some((org_id, record)) = found else {
            return Err(Error::Unverified(UNKNOWN));
        };
        let stored: StoredConnection = decode(&record)?;
        // A token connection's webhooks come without an App id; an App's always with one.
        if stored.app_id.is_some() != delivery.app_id.is_some() {
            return Err(Error::Unverified(UNKNOWN));
        }
        self.opened_connection(org_id, stored).await
    }

    async fn opened_connection(
        &self,
        org_id: String,
        stored: StoredConnection,
    ) -> Result<Connection> {
        let auth = match (
            &stored.app_id,
            &stored.installation_id,
            &stored.sealed_private_key,
        ) {
            (Some(app_id), Some(installation_id), Some(key)) => VcsAuth::App {
                app_id: *app_id,
                installation_id: *installation_id,
                private_key: self.key_ring.open(&org_id, key).await?,
            },
            _ => match &stored.sealed_token {
                Some(token) => VcsAuth::Token(self.key_ring.open(&org_id, token).await?),
                None => {
                    return Err(StoreError::Corrupt(
                        "a GitHub connection without credentials".into(),
                    )
                    .into())
                }
            },
        };
        Ok(Connection {
            org_id,
            stored,
            auth,
        })
    }

    async fn pull_request_event(
        &self,
        connection: &Connection,
        handled: Handled<'_>,
        event: &PullRequestEvent,
    ) -> Result<WebhookOutcome> {
        match event.action.as_str() {
            "opened" | "synchronize" | "reopened" => {}
            "closed" => return self.pull_request_closed(connection, handled, event).await,
            _ => return Ok(WebhookOutcome::Ignored),
        }
        let candidates = self
            .environments_on(&connection.org_id, &event.repository, |e| {
                e.pull_request_plans
            })
            .await?;
        let number = event.pull_request.number;
        let touched = if candidates.is_empty() {
            Vec::new()
        } else {
            let files = self
                .vcs
                .changed_files(&connection.auth, &event.repository.full_name, number)
                .await?;
            touched_by(candidates, &files)?
        };
        let planned = PlanRequest {
            repository: &event.repository,
            number,
            commit: &event.pull_request.head.sha,
            sender: &event.sender.login,
            changed_at: event.pull_request.updated_at,
        };
        self.queue_plans(connection, handled, planned, touched)
            .await
    }

    /// Queues a plan of the pull request's head for each environment, in one commit with
    /// the delivery's marker; the plans they replace that have not started are
    /// cancelled, and the report asked for.
    async fn queue_plans(
        &self,
        connection: &Connection,
        handled: Handled<'_>,
        planned: PlanRequest<'_>,
        environments: Vec<Candidate>,
    ) -> Result<WebhookOutcome> {
        let org_id = &connection.org_id;
        let pr_id = pull_request_id(planned.repository, planned.number);
        let outcome = retrying_conflicts("the pull request kept changing; try again", || async {
            let existing = self.find::<PullRequestRecord>(org_id, &pr_id).await?;
            let now = self.now();
            let mut pull_request = existing.as_ref().map_or_else(
                || PullRequestRecord {
                    repository: planned.repository.full_name.clone(),
                    number: planned.number,
                    head_commit: planned.commit.to_string(),
                    head_changed_at: None,
                    comment_id: None,
                    plans: BTreeMap::new(),
                    updated_at: now,
                },
                |loaded| loaded.value.clone(),
            );
            let mut head = vec![self.delivery_marker(org_id, &handled, now)?];
            // A delivery older than the one that set the head (GitHub does not promise
            // order) would plan an old commit over the new one's plan: only its marker.
            if let (Some(event), Some(seen)) = (planned.changed_at, pull_request.head_changed_at) {
                if event < seen {
                    return self
                        .commit_marked(head, Vec::new())
                        .await
                        .map(|duplicate| (duplicate, Vec::new(), Vec::new()));
                }
            }
            pull_request.head_commit = planned.commit.to_string();
            pull_request.head_changed_at = planned.changed_at.or(pull_request.head_changed_at);
            pull_request.updated_at = now;
            let mut inserts = Vec::new();
            let mut queued = Vec::new();
            let mut replaced = Vec::new();
            for candidate in &environments {
                let deployment = plan_deployment(&candidate.environment, &planned, &pr_id, now);
                inserts.push(queued_insert(org_id, &deployment)?);
                let entry = PlannedEnvironment {
                    environment_name: candidate.environment.name.clone(),
                    deployment_id: deployment.id.clone(),
                };
                if let Some(previous) = pull_request
                    .plans
                    .insert(candidate.environment.id.clone(), entry)
                {
                    replaced.push(previous);
                }
                queued.push((candidate.environment.name.clone(), deployment));
            }
            if queued.is_empty() && existing.is_none() {
                // Nothing planned: only the marker, no record of the pull request.
                return self
                    .commit_marked(head, inserts)
                    .await
                    .map(|duplicate| (duplicate, queued, replaced));
            }
            if !queued.is_empty() {
                head.push(self.webhook_audit_event(
                    org_id,
                    planned.sender,
                    "pull_request.plan",
                    ("pull_request", &pr_id),
                    handled.delivery_id,
                ));
            }
            head.push(match &existing {
                Some(loaded) => {
                    let loaded = Loaded {
                        value: pull_request,
                        stored: loaded.stored.clone(),
                    };
                    loaded.replace()?
                }
                None => WriteOp::Insert(record(org_id, &pr_id, None, None, &pull_request)?),
            });
            self.commit_marked(head, inserts)
                .await
                .map(|duplicate| (duplicate, queued, replaced))
        })
        .await?;
        let (duplicate, queued, replaced) = outcome;
        if duplicate {
            return Ok(WebhookOutcome::Duplicate);
        }
        let announced: Vec<&Deployment> = queued.iter().map(|(_, d)| d).collect();
        self.announce_all(org_id, &announced).await;
        let mut statuses = queued.clone();
        let reason = format!("superseded by commit {}", planned.commit);
        for previous in replaced {
            // The older commit's status says why its plan never ran.
            if let Some(cancelled) = self
                .cancel_if_queued(org_id, &previous.deployment_id, &reason)
                .await
            {
                statuses.push((previous.environment_name, cancelled));
            }
        }
        self.set_statuses(connection, &statuses).await;
        if !queued.is_empty() {
            self.reports
                .request(ReportRequest {
                    org_id: org_id.clone(),
                    pull_request_id: pr_id,
                })
                .await;
        }
        Ok(WebhookOutcome::Queued(
            queued
                .into_iter()
                .map(|(_, deployment)| deployment.id)
                .collect(),
        ))
    }

    async fn pull_request_closed(
        &self,
        connection: &Connection,
        handled: Handled<'_>,
        event: &PullRequestEvent,
    ) -> Result<WebhookOutcome> {
        let org_id = &connection.org_id;
        let pr_id = pull_request_id(&event.repository, event.pull_request.number);
        let marker = self.delivery_marker(org_id, &handled, self.now())?;
        if self.commit_marked(vec![marker], Vec::new()).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        let Some(pull_request) = self.find::<PullRequestRecord>(org_id, &pr_id).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        for planned in pull_request.value.plans.values() {
            self.cancel_if_queued(
                org_id,
                &planned.deployment_id,
                "the pull request was closed",
            )
            .await;
        }
        Ok(WebhookOutcome::Queued(Vec::new()))
    }

    /// A push to an environment's branch, with continuous deployment on: an apply of
    /// the pushed commit, approval rules as for any apply.
    async fn push_event(
        &self,
        connection: &Connection,
        handled: Handled<'_>,
        event: &PushEvent,
    ) -> Result<WebhookOutcome> {
        let Some(branch) = event.branch().filter(|_| !event.deleted) else {
            return Ok(WebhookOutcome::Ignored);
        };
        let org_id = &connection.org_id;
        let candidates = self
            .environments_on(org_id, &event.repository, |e| e.continuous_deployment)
            .await?
            .into_iter()
            .filter(|c| {
                c.environment
                    .revision
                    .as_deref()
                    .unwrap_or(&c.template.revision)
                    == branch
            })
            .collect();
        let touched = touched_by(candidates, &event.changed_files())?;
        let now = self.now();
        let marker = self.delivery_marker(org_id, &handled, now)?;
        let mut inserts = Vec::new();
        let mut queued = Vec::new();
        for candidate in touched {
            let trigger = Trigger::Push {
                repository: event.repository.full_name.clone(),
                branch: branch.to_string(),
                commit: event.after.clone(),
                sender: event.sender.login.clone(),
            };
            let deployment = Deployment::queued(
                &candidate.environment,
                Action::Apply,
                event.after.clone(),
                format!("github:{}", event.sender.login),
                Some(trigger),
                now,
            );
            inserts.push(queued_insert(org_id, &deployment)?);
            queued.push(deployment);
        }
        let mut head = vec![marker];
        if !queued.is_empty() {
            head.push(self.webhook_audit_event(
                org_id,
                &event.sender.login,
                "push.deploy",
                ("commit", &event.after),
                handled.delivery_id,
            ));
        }
        if self.commit_marked(head, inserts).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        self.announce_all(org_id, &queued.iter().collect::<Vec<_>>())
            .await;
        Ok(WebhookOutcome::Queued(
            queued.into_iter().map(|deployment| deployment.id).collect(),
        ))
    }

    /// `/envplane plan [environment]` from someone with write access plans the pull
    /// request's environments again; any other `/envplane` comment gets the list of
    /// commands.
    async fn comment_event(
        &self,
        connection: &Connection,
        handled: Handled<'_>,
        event: &IssueCommentEvent,
    ) -> Result<WebhookOutcome> {
        if event.action != "created" || event.issue.pull_request.is_none() {
            return Ok(WebhookOutcome::Ignored);
        }
        let Some(command) = comment_command(&event.comment.body) else {
            return Ok(WebhookOutcome::Ignored);
        };
        let repository = &event.repository.full_name;
        let number = event.issue.number;
        let CommentCommand::Plan { environment } = command else {
            let marker = self.delivery_marker(&connection.org_id, &handled, self.now())?;
            if self.commit_marked(vec![marker], Vec::new()).await? {
                return Ok(WebhookOutcome::Duplicate);
            }
            self.vcs
                .create_comment(&connection.auth, repository, number, COMMAND_HELP)
                .await?;
            return Ok(WebhookOutcome::Queued(Vec::new()));
        };
        let permission = self
            .vcs
            .permission(&connection.auth, repository, &event.comment.user.login)
            .await?;
        if permission < RepositoryPermission::Write {
            return Ok(WebhookOutcome::Ignored);
        }
        let org_id = &connection.org_id;
        let pr_id = pull_request_id(&event.repository, number);
        let Some(pull_request) = self.find::<PullRequestRecord>(org_id, &pr_id).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        let mut again = Vec::new();
        for (environment_id, planned) in &pull_request.value.plans {
            if environment
                .as_ref()
                .is_some_and(|name| *name != planned.environment_name)
            {
                continue;
            }
            let Some(environment) = self.find::<Environment>(org_id, environment_id).await? else {
                continue;
            };
            if !environment.value.pull_request_plans {
                continue;
            }
            let template = self
                .load::<Template>(org_id, &environment.value.template_id)
                .await?;
            again.push(Candidate {
                environment: environment.value,
                template: template.value,
            });
        }
        let commit = pull_request.value.head_commit.clone();
        let planned = PlanRequest {
            repository: &event.repository,
            number,
            commit: &commit,
            sender: &event.comment.user.login,
            changed_at: None,
        };
        self.queue_plans(connection, handled, planned, again).await
    }

    /// The organization's environments on `repository` that `wanted` picks, with their
    /// templates.
    async fn environments_on(
        &self,
        org_id: &str,
        repository: &Repository,
        wanted: impl Fn(&Environment) -> bool,
    ) -> Result<Vec<Candidate>> {
        let templates: BTreeMap<String, Template> = self
            .every::<Template>(org_id)
            .await?
            .into_iter()
            .filter(|template| repository.is(&template.repository))
            .map(|template| (template.id.clone(), template))
            .collect();
        if templates.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .every::<Environment>(org_id)
            .await?
            .into_iter()
            .filter(|environment| wanted(environment))
            .filter_map(|environment| {
                let template = templates.get(&environment.template_id)?.clone();
                Some(Candidate {
                    environment,
                    template,
                })
            })
            .collect())
    }

    /// Every `T` of the organization, page after page.
    async fn every<T: Stored>(&self, org_id: &str) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list(ListQuery {
                    kind: T::KIND,
                    org_id: org_id.to_string(),
                    parent_id: None,
                    after,
                    limit: MAX_PAGE_SIZE,
                    newest_first: false,
                })
                .await?;
            for record in &page.items {
                all.push(decode(record)?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    fn delivery_marker(
        &self,
        org_id: &str,
        handled: &Handled<'_>,
        now: DateTime<Utc>,
    ) -> Result<WriteOp> {
        let mut marker = record(
            org_id,
            handled.delivery_id,
            None,
            None,
            &HandledDelivery {
                event: handled.event.to_string(),
                at: now,
            },
        )?;
        marker.expires_at = Some((now + Duration::days(DELIVERY_DAYS)).timestamp());
        Ok(WriteOp::Insert(marker))
    }

    /// Commits `head` (the delivery's marker first, then what must change with it) with
    /// the deployments `inserts` adds: `true` when the delivery was handled meanwhile
    /// (nothing is written then). Other conflicts pass on. Inserts beyond what one
    /// commit holds ([`MAX_COMMIT_WRITES`]) follow in commits of their own. Every commit
    /// is fenced on the active region's epoch.
    async fn commit_marked(&self, mut head: Vec<WriteOp>, inserts: Vec<WriteOp>) -> Result<bool> {
        let WriteOp::Insert(marker) = &head[0] else {
            unreachable!("the marker comes first");
        };
        let (org_id, id) = (marker.org_id.clone(), marker.id.clone());
        let fence = self.fence().await?;
        head.extend(fence.clone());
        let room = MAX_COMMIT_WRITES.saturating_sub(head.len());
        let mut inserts = inserts.into_iter();
        head.extend(inserts.by_ref().take(room));
        match self.store.commit(head).await {
            Ok(()) => {}
            Err(StoreError::Conflict)
                if self.find::<HandledDelivery>(&org_id, &id).await?.is_some() =>
            {
                return Ok(true)
            }
            Err(error) => return Err(error.into()),
        }
        let rest: Vec<WriteOp> = inserts.collect();
        for part in rest.chunks(MAX_COMMIT_WRITES - 1) {
            let mut part = part.to_vec();
            part.extend(fence.clone());
            self.store.commit(part).await?;
        }
        Ok(false)
    }

    /// Cancels a deployment that has not started; one that has is left to end.
    /// Answers the deployment it cancelled.
    async fn cancel_if_queued(&self, org_id: &str, id: &str, reason: &str) -> Option<Deployment> {
        let cancelled = async {
            let loaded = self.load::<Deployment>(org_id, id).await?;
            if loaded.value.status != DeploymentStatus::Queued {
                return Ok(None);
            }
            let cancelled = DeploymentStatus::Cancelled;
            let deployment = self
                .conclude(loaded, cancelled, Some(reason.into()), None)
                .await?;
            Ok::<_, Error>(Some(deployment))
        };
        cancelled.await.unwrap_or_else(|error| {
            tracing::warn!(deployment_id = id, %error, "cancelling a plan failed; it runs");
            None
        })
    }

    /// Sets each deployment's commit status; a host that fails is logged, never fatal.
    async fn set_statuses(&self, connection: &Connection, deployments: &[(String, Deployment)]) {
        let calls = deployments
            .iter()
            .filter_map(|(environment_name, deployment)| {
                let Some(Trigger::PullRequest {
                    repository, commit, ..
                }) = &deployment.trigger
                else {
                    return None;
                };
                let status = self.commit_status(environment_name, deployment);
                Some(async move {
                    (
                        deployment,
                        self.vcs
                            .set_status(&connection.auth, repository, commit, &status)
                            .await,
                    )
                })
            });
        for (deployment, result) in futures::future::join_all(calls).await {
            if let Err(error) = result {
                tracing::warn!(deployment_id = %deployment.id, %error, "setting the commit status failed");
            }
        }
    }

    fn commit_status(&self, environment_name: &str, deployment: &Deployment) -> CommitStatus {
        let state = match deployment.status {
            DeploymentStatus::Succeeded => CommitState::Success,
            DeploymentStatus::Failed | DeploymentStatus::Rejected => CommitState::Failure,
            DeploymentStatus::Cancelled => CommitState::Error,
            DeploymentStatus::Queued
            | DeploymentStatus::Running
            | DeploymentStatus::WaitingForApproval => CommitState::Pending,
        };
        CommitStatus {
            context: format!("envplane/{environment_name}"),
            state,
            description: status_description(deployment),
            target_url: Some(self.log_url(&deployment.id)),
        }
    }

    fn log_url(&self, deployment_id: &str) -> String {
        format!(
            "{}/v1/deployments/{deployment_id}/logs",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    /// A short-lived token to clone a github.com repository with over HTTPS, for an
    /// organization connected to GitHub whose variables set no clone credential of their
    /// own. The runner sends it as a header to that host alone and masks it; it lasts
    /// about an hour. None when it cannot be had (the clone then tries without).
    pub(super) async fn github_clone_credential(
        &self,
        org_id: &str,
        repository_url: &str,
        variables: &[JobVariable],
    ) -> Option<JobVariable> {
        let repository = github_com_repository(repository_url)?;
        if variables
            .iter()
            .any(|v| CLONE_CREDENTIAL_VARIABLES.contains(&v.name.as_str()))
        {
            return None;
        }
        let token = async {
            let Some(stored) = self.find::<StoredConnection>(org_id, CONNECTION_ID).await? else {
                return Ok(None);
            };
            let connection = self
                .opened_connection(org_id.to_string(), stored.value)
                .await?;
            Ok::<_, Error>(Some(
                self.vcs.clone_token(&connection.auth, &repository).await?,
            ))
        };
        match token.await {
            Ok(token) => token.map(|token| JobVariable {
                name: GIT_TOKEN_VARIABLE.to_string(),
                value: token.expose_secret().to_string(),
                kind: VariableKind::Env,
                sensitive: true,
            }),
            Err(error) => {
                tracing::warn!(%error, "no GitHub clone token for the sandbox; it clones without");
                None
            }
        }
    }

    /// Brings a pull request's report up to date: its one comment (created once, then
    /// edited) and each environment's commit status. Safe to run again at any time.
    pub async fn report_pull_request(&self, request: &ReportRequest) -> Result<()> {
        let org_id = &request.org_id;
        let Some(pull_request) = self
            .find::<PullRequestRecord>(org_id, &request.pull_request_id)
            .await?
        else {
            return Ok(());
        };
        let stored = self
            .load::<StoredConnection>(org_id, CONNECTION_ID)
            .await?
            .value;
        let connection = self.opened_connection(org_id.clone(), stored).await?;
        let mut deployments = Vec::new();
        for planned in pull_request.value.plans.values() {
            if let Some(deployment) = self
                .find::<Deployment>(org_id, &planned.deployment_id)
                .await?
            {
                deployments.push((planned.environment_name.clone(), deployment.value));
            }
        }
        let mut plans = Vec::new();
        for (_, deployment) in &deployments {
            plans.push(self.plan_text(org_id, deployment).await);
        }
        let sections: Vec<CommentSection<'_>> = deployments
            .iter()
            .zip(&plans)
            .map(|((name, deployment), plan)| CommentSection {
                environment_name: name,
                deployment,
                plan_text: plan.as_deref(),
                log_url: self.log_url(&deployment.id),
            })
            .collect();
        let body = render_comment(&pull_request.value.head_commit, &sections);
        self.set_statuses(&connection, &deployments).await;
        self.upsert_comment(&connection, pull_request, &body).await
    }

    /// The masked plan text of a deployment that has planned.
    async fn plan_text(&self, org_id: &str, deployment: &Deployment) -> Option<String> {
        deployment.plan_summary?;
        match self.plan_view(org_id, &deployment.id).await {
            Ok(view) => Some(view.text),
            Err(error) => {
                tracing::warn!(deployment_id = %deployment.id, %error, "the plan could not be read for the report");
                None
            }
        }
    }

    /// Edits the pull request's comment, or creates it once: of two reports that create
    /// one at the same moment, the one whose id is stored second deletes its own.
    async fn upsert_comment(
        &self,
        connection: &Connection,
        pull_request: Loaded<PullRequestRecord>,
        body: &str,
    ) -> Result<()> {
        let repository = pull_request.value.repository.clone();
        if let Some(comment_id) = pull_request.value.comment_id {
            match self
                .vcs
                .edit_comment(&connection.auth, &repository, comment_id, body)
                .await
            {
                Err(VcsError::NotFound) => {}
                other => return Ok(other?),
            }
        }
        let number = pull_request.value.number;
        let stale = pull_request.value.comment_id;
        let created = self
            .vcs
            .create_comment(&connection.auth, &repository, number, body)
            .await?;
        let mut latest = pull_request;
        loop {
            latest.value.comment_id = Some(created);
            match self.store.commit(vec![latest.replace()?]).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => {}
                Err(error) => return Err(error.into()),
            }
            latest = self
                .load::<PullRequestRecord>(&connection.org_id, &latest.stored.id)
                .await?;
            if let Some(theirs) = latest.value.comment_id.filter(|id| Some(*id) != stale) {
                self.vcs
                    .delete_comment(&connection.auth, &repository, created)
                    .await?;
                return Ok(self
                    .vcs
                    .edit_comment(&connection.auth, &repository, theirs, body)
                    .await?);
            }
        }
    }
}

/// A delivery being handled.
struct Handled<'a> {
    delivery_id: &'a str,
    event: &'a str,
}

/// What a plan of a pull request is of.
struct PlanRequest<'a> {
    repository: &'a Repository,
    number: u64,
    commit: &'a str,
    sender: &'a str,
    /// When GitHub last changed the pull request, as the event says (comment
    /// commands carry none): orders deliveries that arrive out of order.
    changed_at: Option<DateTime<Utc>>,
}

/// `owner/name` of an `https://github.com/owner/name(.git)` repository URL.
fn github_com_repository(url: &str) -> Option<String> {
    let path = url.strip_prefix("https://github.com/")?;
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, name) = path.split_once('/')?;
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (plain(owner) && plain(name)).then(|| format!("{owner}/{name}"))
}

/// A delivery id as GitHub sends it (a GUID): the marker's id.
fn checked_delivery_id(id: &str) -> Result<&str> {
    let valid =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid
        .then_some(id)
        .ok_or_else(|| Error::Malformed("X-GitHub-Delivery must be the delivery's GUID".into()))
}

fn touched_by(candidates: Vec<Candidate>, files: &[String]) -> Result<Vec<Candidate>> {
    let mut touched = Vec::new();
    for candidate in candidates {
        let paths =
            WatchedPaths::new(&candidate.template.path, &candidate.environment.watch_paths)?;
        if paths.touched_by(files) {
            touched.push(candidate);
        }
    }
    Ok(touched)
}

fn plan_deployment(
    environment: &Environment,
    planned: &PlanRequest<'_>,
    pr_id: &str,
    now: DateTime<Utc>,
) -> Deployment {
    let trigger = Trigger::PullRequest {
        repository: planned.repository.full_name.clone(),
        number: planned.number,
        commit: planned.commit.to_string(),
        sender: planned.sender.to_string(),
        pull_request_id: pr_id.to_string(),
    };
    Deployment::queued(
        environment,
        Action::Plan,
        planned.commit.to_string(),
        format!("github:{}", planned.sender),
        Some(trigger),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_tokens_are_for_github_com_https_repositories_alone() {
        let parsed = |url| github_com_repository(url);
        assert_eq!(
            parsed("https://github.com/acme/infra.git").as_deref(),
            Some("acme/infra")
        );
        assert_eq!(
            parsed("https://github.com/acme/infra/").as_deref(),
            Some("acme/infra")
        );
        for other in [
            "https://github.com.evil.example/acme/infra",
            "https://gitlab.com/acme/infra",
            "git@github.com:acme/infra.git",
            "https://github.com/acme/infra/tree/main",
            "https://github.com/acme",
            "https://github.com/../infra",
        ] {
            assert_eq!(parsed(other), None, "{other}");
        }
    }

    #[test]
    fn delivery_ids_are_guids() {
        assert!(checked_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958").is_ok());
        for bad in ["", "../x", "a b", &"a".repeat(65)] {
            assert!(checked_delivery_id(bad).is_err(), "{bad:?}");
        }
    }
}
