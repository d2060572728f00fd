//! GitHub as the platform reads it: the webhook signature, the events it acts on,
//! which environments a change touches, and the one comment a pull request gets.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::deployment::{Deployment, DeploymentStatus, PlanSummary};
use crate::{Error, Result};

/// GitHub caps webhook payloads at 25 MB; a larger body is not from GitHub.
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;
/// The most characters GitHub keeps in one issue comment.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// The most characters GitHub keeps in a commit status description.
const MAX_STATUS_DESCRIPTION_CHARS: usize = 140;
/// Opens the one comment envplane keeps on a pull request, so it can be told from others.
const COMMENT_MARKER: &str = "<!-- envplane:pull-request -->";

/// Whether `header` (`X-Hub-Signature-256`) is `sha256=` and the HMAC-SHA256 of `body`
/// under `secret`, compared in constant time (`Mac::verify_slice` uses `subtle`).
pub fn signature_matches(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(expected) = header
        .and_then(|value| value.strip_prefix("sha256="))
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The `X-Hub-Signature-256` of `body` under `secret`: what GitHub sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: u64,
    /// `owner/name`.
    pub full_name: String,
    pub clone_url: String,
    pub ssh_url: String,
    pub html_url: String,
}

impl Repository {
    /// Whether a template's repository URL names this repository, by any of the URLs
    /// GitHub gives it (HTTPS or SSH, with or without `.git`, any letter case).
    pub fn is(&self, template_repository: &str) -> bool {
        let wanted = comparable_url(template_repository);
        [&self.clone_url, &self.ssh_url, &self.html_url]
            .into_iter()
            .any(|url| comparable_url(url) == wanted)
    }
}

/// `host/path` of a repository URL, lower case, without scheme, user, `.git` or a
/// trailing slash; an SCP-like `git@host:owner/name` reads as `host/owner/name`.
fn comparable_url(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let (rest, scp_like) = match url.split_once("://") {
        Some((_, rest)) => (rest.to_string(), false),
        None => (url.clone(), true),
    };
    let rest = match rest.split_once('@') {
        Some((user, host_and_path)) if !user.contains('/') => host_and_path.to_string(),
        _ => rest,
    };
    let rest = if scp_like {
        rest.replacen(':', "/", 1)
    } else {
        rest
    };
    let rest = rest.trim_end_matches('/');
    rest.strip_suffix(".git").unwrap_or(rest).to_string()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    pub sha: String,
    #[serde(rename = "ref")]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub head: GitRef,
    pub base: GitRef,
    /// When GitHub last changed it; orders deliveries that arrive out of order.
    #[serde(default)]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushCommit {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub commits: Vec<PushCommit>,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

impl PushEvent {
    /// The branch pushed to; `None` for a tag.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    /// Every file the pushed commits added, removed or changed.
    pub fn changed_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .commits
            .iter()
            .flat_map(|commit| [&commit.added, &commit.removed, &commit.modified])
            .flatten()
            .cloned()
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub body: String,
    pub user: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    /// Present when the issue is a pull request.
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    pub installation: Option<Installation>,
}

/// The webhook events envplane acts on; every other one is answered and ignored.
#[derive(Debug, Clone)]
pub enum Event {
    PullRequest(Box<PullRequestEvent>),
    Push(Box<PushEvent>),
    IssueComment(Box<IssueCommentEvent>),
    Ignored,
}

impl Event {
    /// Reads the payload of a verified delivery of `event` (`X-GitHub-Event`).
    pub fn parse(event: &str, body: &[u8]) -> Result<Self> {
        fn read<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Box<T>> {
            serde_json::from_slice(body)
                .map(Box::new)
                .map_err(|e| Error::Malformed(format!("the webhook payload cannot be read: {e}")))
        }
        Ok(match event {
            "pull_request" => Self::PullRequest(read(body)?),
            "push" => Self::Push(read(body)?),
            "issue_comment" => Self::IssueComment(read(body)?),
            _ => Self::Ignored,
        })
    }

    /// The installation the event came through (App connections check it is theirs).
    pub fn installation(&self) -> Option<u64> {
        match self {
            Self::PullRequest(event) => event.installation.as_ref(),
            Self::Push(event) => event.installation.as_ref(),
            Self::IssueComment(event) => event.installation.as_ref(),
            Self::Ignored => None,
        }
        .map(|installation| installation.id)
    }
}

fn compile(glob: &str) -> Result<globset::Glob> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::invalid(format!("watch_paths: {glob:?} is not a glob: {e}")))
}

/// The files whose change concerns an environment: everything under its template's
/// directory, and whatever its extra globs match.
pub struct WatchedPaths {
    directory: Option<String>,
    globs: GlobSet,
}

impl WatchedPaths {
    pub fn new(template_path: &str, globs: &[String]) -> Result<Self> {
        let directory = template_path.trim_start_matches("./").trim_end_matches('/');
        let directory =
            (!directory.is_empty() && directory != ".").then(|| format!("{directory}/"));
        let mut set = GlobSetBuilder::new();
        for glob in globs {
            set.add(compile(glob)?);
        }
        let globs = set
            .build()
            .map_err(|e| Error::invalid(format!("watch_paths cannot be combined: {e}")))?;
        Ok(Self { directory, globs })
    }

    pub fn touched_by<S: AsRef<str>>(&self, files: &[S]) -> bool {
        files.iter().any(|file| {
            let file = file.as_ref();
            self.directory
                .as_deref()
                .is_none_or(|directory| file.starts_with(directory))
                || self.globs.is_match(file)
        })
    }
}

/// One environment's part of a pull request's comment.
pub struct CommentSection<'a> {
    pub environment_name: &'a str,
    pub deployment: &'a Deployment,
    /// The masked plan text, once there is one.
    pub plan_text: Option<&'a str>,
    /// Where the full log can be read.
    pub log_url: String,
}

/// What a deployment's status reads as on GitHub.
pub fn status_word(status: DeploymentStatus) -> &'static str {
    match status {
        DeploymentStatus::Queued => "queued",
        DeploymentStatus::Running => "planning",
        DeploymentStatus::WaitingForApproval => "waiting for approval",
        DeploymentStatus::Succeeded => "planned",
        DeploymentStatus::Failed => "failed",
        DeploymentStatus::Cancelled => "cancelled",
        DeploymentStatus::Rejected => "rejected",
    }
}

fn summary_text(summary: Option<&PlanSummary>) -> String {
    match summary {
        Some(s) if s.has_changes() => format!("+{} ~{} -{}", s.add, s.change, s.destroy),
        Some(_) => "no changes".into(),
        None => "no plan yet".into(),
    }
}

/// A commit status description: the state and the plan summary, within GitHub's 140
/// characters.
pub fn status_description(deployment: &Deployment) -> String {
    let mut description = format!(
        "{}: {}",
        status_word(deployment.status),
        summary_text(deployment.plan_summary.as_ref())
    );
    if let Some(reason) = &deployment.reason {
        description.push_str(" (");
        description.push_str(reason);
        description.push(')');
    }
    cut_chars(&description, MAX_STATUS_DESCRIPTION_CHARS).0
}

/// The pull request's one comment: a section per environment, each plan in a
/// `<details>` block, the plans cut (with a note) so the whole fits GitHub's limit.
pub fn render_comment(head_sha: &str, sections: &[CommentSection<'_>]) -> String {
    let short = &head_sha[..head_sha.len().min(12)];
    let mut head = format!("{COMMENT_MARKER}\n## envplane plans for {short}\n");
    let mut frames = Vec::new();
    for section in sections {
        let deployment = section.deployment;
        let mut frame = format!(
            "\n### {}: {}\n\n{} · `{}` · [full log]({})\n",
            section.environment_name,
            status_word(deployment.status),
            summary_text(deployment.plan_summary.as_ref()),
            deployment.id,
            section.log_url
        );
        if let Some(cost) = &deployment.cost_estimate {
            frame.push_str(&format!("\nEstimated cost: {}\n", cost.headline()));
        }
        if let Some(reason) = &deployment.reason {
            frame.push_str(&format!("\n> {}\n", reason.replace('\n', " ")));
        }
        frames.push(frame);
    }
    let fixed: usize =
        head.chars().count() + frames.iter().map(|f| f.chars().count()).sum::<usize>();
    let plans: Vec<&str> = sections.iter().map(|s| s.plan_text.unwrap_or("")).collect();
    let wrappers = plans.iter().filter(|p| !p.is_empty()).count();
    // Room for the plans, shared out evenly; what one plan leaves goes to the others.
    const WRAPPER_CHARS: usize = 200;
    let mut room = MAX_COMMENT_CHARS.saturating_sub(fixed + wrappers * WRAPPER_CHARS);
    let mut left = wrappers;
    let mut order: Vec<usize> = (0..plans.len()).filter(|&i| !plans[i].is_empty()).collect();
    order.sort_by_key(|&i| plans[i].chars().count());
    let mut shares = vec![0; plans.len()];
    for i in order {
        let share = room / left.max(1);
        shares[i] = share.min(plans[i].chars().count());
        room -= shares[i];
        left -= 1;
    }
    for (i, frame) in frames.iter_mut().enumerate() {
        if !plans[i].is_empty() {
            frame.push_str(&plan_block(plans[i], shares[i], &sections[i].log_url));
        }
    }
    head.extend(frames);
    head
}

/// The plan in a `<details>` block, at most `room` of its characters, with a note where
/// it was cut. The fence is longer than any run of backticks in the plan.
fn plan_block(plan: &str, room: usize, log_url: &str) -> String {
    let (shown, cut) = cut_chars(plan, room);
    let longest_ticks = shown.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_ticks.max(2) + 1);
    let note = if cut {
        format!("\n\n*The plan was cut here to fit in a comment; the rest is in the [full log]({log_url}).*")
    } else {
        String::new()
    };
    format!("\n<details><summary>Plan</summary>\n\n{fence}\n{shown}\n{fence}{note}\n</details>\n")
}

/// The first `max` characters of `text`, and whether anything was left out.
fn cut_chars(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (text[..end].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// What a `/envplane` comment asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum CommentCommand {
    /// Plan again: every planned environment, or the one named.
    Plan { environment: Option<String> },
    /// Something after `/envplane` that is not a command.
    Unknown,
}

/// Reads a comment's first line as a command when it starts with `/envplane`. The text
/// is only split into words and compared, never handed to a shell.
pub fn comment_command(body: &str) -> Option<CommentCommand> {
    let line = body.lines().next()?.trim();
    let mut words = line.split_whitespace();
    if words.next()? != "/envplane" {
        return None;
    }
    Some(match (words.next(), words.next(), words.next()) {
        (Some("plan"), environment, None) => CommentCommand::Plan {
            environment: environment.map(str::to_string),
        },
        _ => CommentCommand::Unknown,
    })
}

/// The reply to a comment that starts with `/envplane` but is no command.
pub const COMMAND_HELP: &str = "envplane understands:\n\n\
    * `/envplane plan`: plan every environment of this pull request again\n\
    * `/envplane plan <environment>`: plan that environment again\n\n\
    Applying from a comment is not supported: merge to deploy where continuous deployment is on.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_only_the_exact_body_and_secret() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let header = sign(b"secret", body);
        assert!(signature_matches(b"secret", body, Some(&header)));
        assert!(!signature_matches(b"other", body, Some(&header)));
        assert!(!signature_matches(b"secret", b"{}", Some(&header)));
        assert!(!signature_matches(b"secret", body, None));
        assert!(!signature_matches(b"secret", body, Some("sha256=zz")));
        let sha1 = header.replacen("sha256=", "sha1=", 1);
        assert!(!signature_matches(b"secret", body, Some(&sha1)));
        assert!(!signature_matches(b"secret", body, Some("sha256=")));
    }

    #[test]
    fn a_repository_matches_by_any_of_its_urls() {
        let repository = Repository {
            id: 1,
            full_name: "Acme/Infra".into(),
            clone_url: "https://github.com/Acme/Infra.git".into(),
            ssh_url: "git@github.com:Acme/Infra.git".into(),
            html_url: "https://github.com/Acme/Infra".into(),
        };
        for url in [
            "https://github.com/acme/infra",
            "https://github.com/Acme/Infra.git",
            "git@github.com:acme/infra.git",
            "ssh://git@github.com/acme/infra.git",
            "https://github.com/acme/infra/",
        ] {
            assert!(repository.is(url), "{url}");
        }
        for url in [
            "https://github.com/acme/infra-other",
            "https://gitlab.com/acme/infra",
            "https://github.com/acme",
        ] {
            assert!(!repository.is(url), "{url}");
        }
    }

    #[test]
    fn a_change_touches_the_template_directory_or_a_glob() {
        let paths = WatchedPaths::new("stacks/app", &["modules/**".into()]).unwrap();
        assert!(paths.touched_by(&["stacks/app/main.tf"]));
        assert!(paths.touched_by(&["README.md", "modules/net/vpc.tf"]));
        assert!(!paths.touched_by(&["stacks/application/main.tf"]));
        assert!(!paths.touched_by(&["stacks/other/main.tf", "README.md"]));
        let root = WatchedPaths::new(".", &[]).unwrap();
        assert!(root.touched_by(&["anything.tf"]));
        assert!(!root.touched_by::<&str>(&[]));
        let star = WatchedPaths::new("app", &["*.tf".into()]).unwrap();
        assert!(star.touched_by(&["versions.tf"]));
        assert!(
            !star.touched_by(&["other/versions.tf"]),
            "* stays in one directory"
        );
    }

    #[test]
    fn every_watched_path_the_rule_takes_is_a_glob() {
        let taken = [
            "modules/**",
            "*.tfvars",
            "**/*.tf",
            "env/?/main.tf",
            "a*b*c",
            "*",
            "**",
        ];
        for glob in taken {
            let globs = crate::validate::watch_paths(vec![glob.into()]).expect(glob);
            assert!(WatchedPaths::new(".", &globs).is_ok(), "{glob}");
        }
        for refused in [
            "modules/[",
            "***",
            "a**",
            "",
            "a//b",
            "/abs",
            "{a,b}",
            "x\ny",
        ] {
            assert!(
                crate::validate::watch_paths(vec![refused.into()]).is_err(),
                "{refused:?}"
            );
        }
        assert!(crate::validate::watch_paths(vec!["*.tf".into(); 21]).is_err());
    }

    fn deployment(id: &str) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "id": id, "environment_id": "env_1", "project_id": "prj_1", "action": "plan",
            "status": "succeeded", "requires_approval": false, "revision": "abc",
            "commit": null, "steps": [], "reason": null, "cancel_requested": false,
            "attempt": 1, "requested_by": "github:octocat", "approved_by": null,
            "plan_summary": { "add": 2, "change": 1, "destroy": 0, "outputs_changed": false },
            "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
            "started_at": null, "finished_at": null
        }))
        .unwrap()
    }

    #[test]
    fn the_comment_fits_githubs_limit_and_says_where_plans_were_cut() {
        let (small, big) = (deployment("dep_small"), deployment("dep_big"));
        let huge = "~ resource \"aws_instance\" \"web\" ```\n".repeat(10_000);
        let sections = [
            CommentSection {
                environment_name: "staging",
                deployment: &small,
                plan_text: Some("Plan: 2 to add, 1 to change, 0 to destroy."),
                log_url: "https://envplane.example/v1/deployments/dep_small/logs".into(),
            },
            CommentSection {
                environment_name: "production",
                deployment: &big,
                plan_text: Some(&huge),
                log_url: "https://envplane.example/v1/deployments/dep_big/logs".into(),
            },
        ];
        let comment = render_comment("7fd1a60b01f91b314f59955a4e4d4e80d8edf11d", &sections);
        assert!(comment.chars().count() <= MAX_COMMENT_CHARS);
        assert!(comment.starts_with(COMMENT_MARKER));
        assert!(comment.contains("## envplane plans for 7fd1a60b01f9"));
        assert!(
            comment.contains("Plan: 2 to add, 1 to change, 0 to destroy."),
            "the small plan is whole"
        );
        assert!(comment.contains("+2 ~1 -0"));
        assert_eq!(
            comment.matches("was cut here").count(),
            1,
            "only the big plan was cut"
        );
        // The plan's own backticks cannot close its fence.
        assert!(comment.contains("\n````\n"));
        let whole = render_comment("abc", &sections[..1]);
        assert!(!whole.contains("was cut"));
    }

    #[test]
    fn commands_are_words_compared_never_run() {
        assert_eq!(
            comment_command("/envplane plan"),
            Some(CommentCommand::Plan { environment: None })
        );
        assert_eq!(
            comment_command("  /envplane plan staging\nthanks"),
            Some(CommentCommand::Plan {
                environment: Some("staging".into())
            })
        );
        assert_eq!(
            comment_command("/envplane apply"),
            Some(CommentCommand::Unknown)
        );
        assert_eq!(
            comment_command("/envplane plan $(rm -rf /) now"),
            Some(CommentCommand::Unknown)
        );
        assert_eq!(comment_command("looks good /envplane plan"), None);
        assert_eq!(comment_command("/envplanet plan"), None);
    }
}
