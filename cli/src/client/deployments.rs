//! `envplane deploy`, `approve`, `reject`, `cancel`, `logs`, `deployments` and
//! `deployment show`: running an environment's code and following it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use envplane_core::deployment::{
    Action, Deployment, DeploymentStatus, LogChunk, PlanSummary, Step,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{ApiClient, Paging};
use super::output::{self, Format, Render};

/// How often a deployment or its log is polled: live enough, and gentle on the server.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Log chunks asked for per request (the API's most).
const LOG_PAGE: usize = 500;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[arg(value_name = "ENV_ID")]
    environment_id: String,
    /// Only plan: show what would change and change nothing.
    #[arg(long, conflicts_with = "destroy")]
    plan_only: bool,
    /// Destroy the environment's infrastructure.
    #[arg(long)]
    destroy: bool,
    /// Follow the deployment until it ends or waits for approval; exit 1 unless it
    /// succeeded or waits.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    id: String,
    /// Follow the approved apply until it ends; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    id: String,
    /// Keep printing new output until the deployment ends.
    #[arg(long, short)]
    follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(value_name = "ENV_ID")]
    environment_id: String,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show one deployment with its steps.
    Show {
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
    },
}

impl DeployArgs {
    fn action(&self) -> Action {
        if self.plan_only {
            Action::Plan
        } else if self.destroy {
            Action::Destroy
        } else {
            Action::Apply
        }
    }
}

pub async fn deploy(api: &ApiClient, format: Format, args: DeployArgs) -> anyhow::Result<()> {
    let path = ["v1", "environments", &args.environment_id, "deployments"];
    let body = json!({ "action": args.action() });
    let deployment = api.post(&path, &body).await?;
    if args.wait {
        follow(api, format, deployment).await
    } else {
        output::print_one::<Deployment>(format, deployment)
    }
}

pub async fn approve(api: &ApiClient, format: Format, args: ApproveArgs) -> anyhow::Result<()> {
    decide(api, format, &args.id, "approve", args.wait).await
}

/// Approves, rejects or cancels; answers the deployment, or follows it with `wait`.
pub async fn decide(
    api: &ApiClient,
    format: Format,
    id: &str,
    verb: &str,
    wait: bool,
) -> anyhow::Result<()> {
    let deployment = api
        .post(&["v1", "deployments", id, verb], &json!({}))
        .await?;
    if wait {
        follow(api, format, deployment).await
    } else {
        output::print_one::<Deployment>(format, deployment)
    }
}

/// Cancels; `force` ends a running deployment without waiting for its sandbox.
pub async fn cancel(api: &ApiClient, format: Format, id: &str, force: bool) -> anyhow::Result<()> {
    if !force {
        return decide(api, format, id, "cancel", false).await;
    }
    let path = ["v1", "deployments", id, "cancel"];
    let deployment = api
        .post_query(&path, &[("force", "true")], &json!({}))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the API answered the cancel without the deployment"))?;
    output::print_one::<Deployment>(format, deployment)
}

pub async fn list(api: &ApiClient, format: Format, args: ListArgs) -> anyhow::Result<()> {
    let path = ["v1", "environments", &args.environment_id, "deployments"];
    let listing = api.list(&path, &[], &args.paging).await?;
    output::print_list::<Deployment>(format, listing)
}

pub async fn run(api: &ApiClient, format: Format, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Show { id } => {
            let value = api.get(&["v1", "deployments", &id]).await?;
            if format == Format::Json {
                output::print_json(&value);
                return Ok(());
            }
            let detail: Detail = output::parse(value)?;
            println!("{}", output::details_table(&detail));
            if !detail.0.steps.is_empty() {
                println!("{}", output::list_table(&detail.0.steps));
            }
        }
    }
    Ok(())
}

/// One page of `GET /v1/deployments/{id}/logs`.
#[derive(Deserialize)]
struct LogPage {
    items: Vec<LogChunk>,
    last_seq: Option<u64>,
    complete: bool,
}

/// Prints the log as it was written (one JSON chunk per line with `--output json`);
/// with `follow`, polls until the deployment has ended and every chunk is out.
pub async fn logs(api: &ApiClient, format: Format, args: LogsArgs) -> anyhow::Result<()> {
    let path = ["v1", "deployments", args.id.as_str(), "logs"];
    let limit = LOG_PAGE.to_string();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit.as_str())];
        if let Some(seq) = &after {
            query.push(("after", seq));
        }
        let page: LogPage = output::parse(api.get_query(&path, &query).await?)?;
        let mut stdout = std::io::stdout().lock();
        for chunk in &page.items {
            match format {
                Format::Table => stdout.write_all(chunk.text.as_bytes())?,
                Format::Json => writeln!(stdout, "{}", serde_json::to_string(chunk)?)?,
            }
        }
        stdout.flush()?;
        drop(stdout);
        if let Some(seq) = page.last_seq {
            after = Some(seq.to_string());
        }
        if page.complete || (page.items.is_empty() && !args.follow) {
            return Ok(());
        }
        // A full page means more is waiting: catch up at once, poll gently after.
        if page.items.len() < LOG_PAGE {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Polls the deployment until it ends or waits for approval, showing its steps, then
/// prints how it ended (its JSON with `--output json`). Fails unless it succeeded or
/// waits for approval.
async fn follow(api: &ApiClient, format: Format, mut value: Value) -> anyhow::Result<()> {
    let mut progress = Progress::new(std::io::stdout().is_terminal());
    loop {
        let deployment: Deployment = output::parse(value.clone())?;
        if format == Format::Table {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(progress.render(&deployment, Utc::now()).as_bytes())?;
            stdout.flush()?;
        }
        if settled(deployment.status) {
            match format {
                Format::Json => output::print_json(&value),
                Format::Table => println!("{}", outcome(&deployment)),
            }
            if deployment.status.is_final() && deployment.status != DeploymentStatus::Succeeded {
                anyhow::bail!(
                    "deployment {} {}",
                    deployment.id,
                    deployment.status.as_str()
                );
            }
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        value = api.get(&["v1", "deployments", &deployment.id]).await?;
    }
}

/// Whether following a deployment stops here: it ended, or waits for a person.
fn settled(status: DeploymentStatus) -> bool {
    status.is_final() || status == DeploymentStatus::WaitingForApproval
}

/// The live step display: redrawn in place on a terminal, a line per change otherwise.
struct Progress {
    terminal: bool,
    /// Terminal: how many lines the last drawing took.
    drawn: usize,
    /// Otherwise: the last line printed for each step, and the status last printed.
    printed: Vec<String>,
    status: Option<DeploymentStatus>,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            drawn: 0,
            printed: Vec::new(),
            status: None,
        }
    }

    /// What to write to show `deployment` as of `now`.
    fn render(&mut self, deployment: &Deployment, now: DateTime<Utc>) -> String {
        let header = format!(
            "Deployment {} ({}): {}",
            deployment.id,
            output::label(&deployment.action),
            status(deployment)
        );
        let mut text = String::new();
        if self.terminal {
            // Back to the first line drawn, then rewrite every line in full.
            if self.drawn > 0 {
                text.push_str(&format!("\x1b[{}A\r", self.drawn));
            }
            let steps = deployment
                .steps
                .iter()
                .map(|step| step_line(step, Some(now)));
            let lines: Vec<String> = std::iter::once(header).chain(steps).collect();
            for line in &lines {
                text.push_str(&format!("\x1b[2K{line}\n"));
            }
            text.push_str("\x1b[J");
            self.drawn = lines.len();
            return text;
        }
        // How it ended is told once, by the outcome that follows.
        if self.status != Some(deployment.status) && !settled(deployment.status) {
            self.status = Some(deployment.status);
            text.push_str(&header);
            text.push('\n');
        }
        for (index, step) in deployment.steps.iter().enumerate() {
            let line = step_line(step, None);
            if self.printed.get(index) != Some(&line) {
                text.push_str(&line);
                text.push('\n');
                self.printed.truncate(index);
                self.printed.push(line);
            }
        }
        text
    }
}

/// `  plan             succeeded  1.2s`; a running step shows its time so far only
/// when `now` is given.
fn step_line(step: &Step, now: Option<DateTime<Utc>>) -> String {
    let took = match (step.started_at, step.finished_at.or(now)) {
        (Some(started), Some(until)) => output::duration(until - started),
        _ => String::new(),
    };
    let line = format!(
        "  {:<16} {:<10} {took}",
        step.name,
        output::label(&step.status)
    );
    line.trim_end().to_string()
}

/// How a followed deployment ended: status, plan and reason.
fn outcome(deployment: &Deployment) -> String {
    let id = &deployment.id;
    let mut lines = vec![match deployment.status {
        DeploymentStatus::WaitingForApproval => format!(
            "Deployment {id} is waiting for approval: envplane approve {id} (or reject {id})"
        ),
        status => {
            let took = match deployment.started_at {
                Some(_) => format!(
                    " after {}",
                    output::elapsed(deployment.started_at, deployment.finished_at)
                ),
                None => String::new(),
            };
            format!("Deployment {id} {}{took}.", status.as_str())
        }
    }];
    if let Some(plan) = &deployment.plan_summary {
        let outputs = if plan.outputs_changed {
            ", outputs change"
        } else {
            ""
        };
        lines.push(format!("Plan: {}{outputs}", summary(Some(plan))));
    }
    if let Some(cost) = &deployment.cost_estimate {
        lines.push(format!("Estimated cost: {}", cost.headline()));
    }
    if let Some(reason) = &deployment.reason {
        lines.push(format!("Reason: {reason}"));
    }
    lines.join("\n")
}

/// The status, and whether a cancel was asked for and is under way.
fn status(deployment: &Deployment) -> String {
    let status = deployment.status.as_str();
    if deployment.cancel_requested && !deployment.status.is_final() {
        format!("{status} (cancelling)")
    } else {
        status.to_string()
    }
}

/// `+1 ~0 -2`: resources to add, change and destroy; `-` before a plan.
fn summary(plan: Option<&PlanSummary>) -> String {
    plan.map_or_else(
        || "-".to_string(),
        |plan| format!("+{} ~{} -{}", plan.add, plan.change, plan.destroy),
    )
}

impl Render for Deployment {
    const COLUMNS: &'static [&'static str] =
        &["id", "action", "status", "created", "duration", "summary"];

    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            output::label(&self.action),
            status(self),
            output::timestamp(&self.created_at),
            output::elapsed(self.started_at, self.finished_at),
            summary(self.plan_summary.as_ref()),
        ]
    }
}

/// A deployment with every field, for `deployment show`.
#[derive(Deserialize)]
#[serde(transparent)]
struct Detail(Deployment);

impl Render for Detail {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "environment",
        "action",
        "status",
        "revision",
        "commit",
        "plan",
        "reason",
        "attempt",
        "requested by",
        "approved by",
        "created",
        "started",
        "finished",
        "duration",
    ];

    fn row(&self) -> Vec<String> {
        let deployment = &self.0;
        let time = |at: Option<&DateTime<Utc>>| at.map_or_else(|| "-".into(), output::timestamp);
        vec![
            deployment.id.clone(),
            deployment.environment_id.clone(),
            output::label(&deployment.action),
            status(deployment),
            deployment.revision.clone(),
            output::or_dash(deployment.commit.as_deref()),
            summary(deployment.plan_summary.as_ref()),
            output::or_dash(deployment.reason.as_deref()),
            deployment.attempt.to_string(),
            deployment.requested_by.clone(),
            output::or_dash(deployment.approved_by.as_deref()),
            output::timestamp(&deployment.created_at),
            time(deployment.started_at.as_ref()),
            time(deployment.finished_at.as_ref()),
            output::elapsed(deployment.started_at, deployment.finished_at),
        ]
    }
}

impl Render for Step {
    const COLUMNS: &'static [&'static str] = &["step", "status", "started", "duration"];

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            output::label(&self.status),
            self.started_at
                .as_ref()
                .map_or_else(|| "-".into(), output::timestamp),
            output::elapsed(self.started_at, self.finished_at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use envplane_core::deployment::StepStatus;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
    }

    fn step(name: &str, status: StepStatus, started: i64, finished: Option<i64>) -> Step {
        Step {
            name: name.into(),
            status,
            started_at: Some(at(started)),
            finished_at: finished.map(at),
        }
    }

    fn deployment(status: DeploymentStatus, steps: Vec<Step>) -> Deployment {
        output::parse(json!({
            "id": "dep_1", "environment_id": "env_1", "project_id": "prj_1",
            "action": "apply", "status": status, "requires_approval": false,
            "revision": "main", "commit": null, "steps": steps, "plan_summary": null,
            "reason": null, "cancel_requested": false, "attempt": 1,
            "requested_by": "admin", "approved_by": null,
            "created_at": at(0), "updated_at": at(0), "started_at": at(1),
            "finished_at": null
        }))
        .unwrap()
    }

    #[test]
    fn flags_choose_the_action() {
        #[derive(clap::Parser)]
        struct Deploy {
            #[command(flatten)]
            args: DeployArgs,
        }
        let parse = |args: &[&str]| {
            <Deploy as clap::Parser>::try_parse_from(["deploy", "env_1"].iter().chain(args))
                .map(|deploy| deploy.args.action())
        };
        assert_eq!(parse(&[]).unwrap(), Action::Apply);
        assert_eq!(parse(&["--plan-only", "--wait"]).unwrap(), Action::Plan);
        assert_eq!(parse(&["--destroy"]).unwrap(), Action::Destroy);
        assert!(parse(&["--plan-only", "--destroy"]).is_err());
    }

    #[test]
    fn summaries_count_adds_changes_and_destroys() {
        let plan = PlanSummary {
            add: 3,
            change: 1,
            destroy: 2,
            outputs_changed: true,
        };
        assert_eq!(summary(Some(&plan)), "+3 ~1 -2");
        assert_eq!(summary(None), "-");
    }

    #[test]
    fn step_lines_show_durations_of_finished_steps_or_live_ones() {
        let done = step("clone", StepStatus::Succeeded, 0, Some(2));
        assert_eq!(
            step_line(&done, None),
            format!("  {:<16} {:<10} 2.0s", "clone", "succeeded")
        );
        let running = step("plan", StepStatus::Running, 2, None);
        assert!(step_line(&running, None).ends_with("running"));
        assert!(step_line(&running, Some(at(5))).ends_with("running    3.0s"));
    }

    #[test]
    fn without_a_terminal_each_change_prints_one_line() {
        let mut progress = Progress::new(false);
        let running = step("clone", StepStatus::Running, 1, None);
        let first = progress.render(
            &deployment(DeploymentStatus::Running, vec![running.clone()]),
            at(2),
        );
        assert_eq!(first.lines().count(), 2, "{first}");
        assert!(
            first.starts_with("Deployment dep_1 (apply): running\n"),
            "{first}"
        );
        let same = progress.render(&deployment(DeploymentStatus::Running, vec![running]), at(3));
        assert_eq!(same, "", "nothing changed");
        let steps = vec![
            step("clone", StepStatus::Succeeded, 1, Some(2)),
            step("init", StepStatus::Running, 2, None),
        ];
        let next = progress.render(&deployment(DeploymentStatus::Running, steps), at(4));
        assert_eq!(next.lines().count(), 2, "{next}");
        assert!(
            next.contains("succeeded  1.0s") && next.contains("init"),
            "{next}"
        );
        assert!(!next.contains('\x1b'));
        let steps = vec![
            step("clone", StepStatus::Succeeded, 1, Some(2)),
            step("init", StepStatus::Failed, 2, Some(3)),
        ];
        let failed = progress.render(&deployment(DeploymentStatus::Failed, steps), at(4));
        assert_eq!(
            failed.lines().count(),
            1,
            "the outcome tells the end: {failed}"
        );
    }

    #[test]
    fn on_a_terminal_the_display_is_redrawn_in_place() {
        let mut progress = Progress::new(true);
        let steps = vec![step("clone", StepStatus::Running, 1, None)];
        let first = progress.render(&deployment(DeploymentStatus::Running, steps), at(3));
        assert!(!first.contains("\x1b[2A"), "nothing to move over yet");
        assert!(first.contains("clone") && first.contains("2.0s"), "{first}");
        let steps = vec![step("clone", StepStatus::Running, 1, None)];
        let again = progress.render(&deployment(DeploymentStatus::Running, steps), at(4));
        assert!(again.starts_with("\x1b[2A\r"), "{again:?}");
        assert!(again.contains("3.0s"), "the running step's time goes on");
    }

    #[test]
    fn outcomes_tell_status_plan_and_reason() {
        let mut failed = deployment(DeploymentStatus::Failed, vec![]);
        failed.finished_at = Some(at(13));
        failed.plan_summary = Some(PlanSummary {
            add: 1,
            ..PlanSummary::default()
        });
        failed.reason = Some("terraform apply exited with 1".into());
        assert_eq!(
            outcome(&failed),
            "Deployment dep_1 failed after 12.0s.\nPlan: +1 ~0 -0\nReason: terraform apply exited with 1"
        );
        let mut never_started = deployment(DeploymentStatus::Cancelled, vec![]);
        never_started.started_at = None;
        assert_eq!(outcome(&never_started), "Deployment dep_1 cancelled.");
        let waiting = deployment(DeploymentStatus::WaitingForApproval, vec![]);
        assert!(outcome(&waiting).contains("envplane approve dep_1"));
    }

    #[test]
    fn listings_show_the_summary_and_duration() {
        let mut done = deployment(DeploymentStatus::Succeeded, vec![]);
        done.finished_at = Some(at(66));
        let row = done.row();
        assert_eq!(row[..3], ["dep_1", "apply", "succeeded"]);
        assert_eq!(row[4..], ["1m 05s", "-"]);
        let mut cancelling = deployment(DeploymentStatus::Running, vec![]);
        cancelling.cancel_requested = true;
        assert_eq!(cancelling.row()[2], "running (cancelling)");
    }
}
