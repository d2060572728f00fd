//! One deployment phase, step by step: clone, hooks, init, plan, apply or destroy,
//! outputs. Each step is reported and logged; the first failure ends the phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envplane_core::deployment::{
    Action, Job, Phase, PhaseReport, PhaseResult, PlanSummary, StepStatus,
};
use envplane_core::model::VariableKind;
use envplane_core::validate::{
    reserved_environment_name, CLONE_CREDENTIAL_VARIABLES, CLONE_VARIABLES,
    GIT_KNOWN_HOSTS_VARIABLE, GIT_SSH_KEY_VARIABLE, GIT_TOKEN_VARIABLE,
};
use serde_json::{Map, Value};
use tokio::process::Command;

use crate::client::ApiClient;
use crate::flow::{Flow, Hook};
use crate::iac::{resolve_terraform, ResolveOptions};
use crate::logs::{LogShipper, StepLog};
use crate::process::{run_captured, run_checked, run_logged, Interrupt, RunError};
use crate::terraform;

const PLAN_FILE: &str = "envplane.tfplan";

pub struct Context {
    pub client: ApiClient,
    pub shipper: LogShipper,
    pub interrupt: Interrupt,
    pub job: Job,
    /// Terraform's credential for the state backend: this environment's state, this
    /// phase, nothing else.
    pub state_token: String,
    /// Every value the log and the outputs must never show ([`secrets`]).
    pub secrets: Vec<String>,
    pub work_dir: PathBuf,
    pub tools_dir: Option<PathBuf>,
}

/// Why a phase ended early, in words for the deployment's `reason`.
#[derive(Debug)]
struct Failure(String);

impl From<crate::client::ClientError> for Failure {
    fn from(error: crate::client::ClientError) -> Self {
        Failure(error.to_string())
    }
}

/// What the phase produced on the way.
#[derive(Default)]
struct Progress {
    commit: Option<String>,
    plan_summary: Option<PlanSummary>,
    outputs: Option<Map<String, Value>>,
}

/// Runs the job's phase and says how it ended; never panics on bad input.
pub async fn run(context: &Context) -> PhaseReport {
    let mut progress = Progress::default();
    let result = run_phase(context, &mut progress).await;
    let (result, reason) = match result {
        Ok(result) => (result, None),
        Err(Failure(reason)) => (PhaseResult::Failed, Some(reason)),
    };
    PhaseReport {
        result,
        reason,
        plan_summary: progress.plan_summary,
        commit: progress.commit,
        outputs: progress.outputs,
    }
}

async fn run_phase(context: &Context, progress: &mut Progress) -> Result<PhaseResult, Failure> {
    let job = &context.job;
    let checkout = context.work_dir.join("src");
    progress.commit = Some(clone(context, &checkout).await?);
    let dir = checkout.join(&job.path);
    if !dir.is_dir() {
        return Err(Failure(format!(
            "the path {:?} does not exist in the repository at {}",
            job.path, job.revision
        )));
    }
    let flow =
        Flow::load(&dir).map_err(|error| Failure(format!("envplane.yml is invalid: {error}")))?;
    let terraform = Terraform::prepare(context, &dir).await?;

    hooks(context, &flow, Hook::BeforeInit, &dir).await?;
    step(
        context,
        "init",
        terraform.command(&["init", "-input=false", "-no-color"]),
    )
    .await?;
    hooks(context, &flow, Hook::AfterInit, &dir).await?;

    let (before, after, apply_step) = match job.action {
        Action::Destroy => (Hook::BeforeDestroy, Hook::AfterDestroy, "destroy"),
        Action::Plan | Action::Apply => (Hook::BeforeApply, Hook::AfterApply, "apply"),
    };
    if job.phase != Phase::ApplySavedPlan {
        hooks(context, &flow, Hook::BeforePlan, &dir).await?;
        progress.plan_summary = Some(plan(context, &terraform).await?);
        hooks(context, &flow, Hook::AfterPlan, &dir).await?;
        if job.action == Action::Plan {
            return Ok(PhaseResult::Succeeded);
        }
        if job.phase == Phase::PlanForApproval {
            let plan = std::fs::read(dir.join(PLAN_FILE))
                .map_err(|e| Failure(format!("the plan file could not be read: {e}")))?;
            context.client.put_plan(plan).await?;
            return Ok(PhaseResult::PlanReady);
        }
    } else {
        let plan = context.client.get_plan().await?;
        std::fs::write(dir.join(PLAN_FILE), plan)
            .map_err(|e| Failure(format!("the saved plan could not be written: {e}")))?;
    }
    hooks(context, &flow, before, &dir).await?;
    step(
        context,
        apply_step,
        terraform.command(&[
            "apply",
            "-input=false",
            "-no-color",
            "-auto-approve",
            PLAN_FILE,
        ]),
    )
    .await?;
    hooks(context, &flow, after, &dir).await?;
    progress.outputs = Some(outputs(context, &terraform).await?);
    Ok(PhaseResult::Succeeded)
}

/// Clones the repository and checks out the revision; returns the commit.
async fn clone(context: &Context, checkout: &Path) -> Result<String, Failure> {
    let job = &context.job;
    let name = "clone";
    context.client.step(name, StepStatus::Running).await?;
    let mut log = context.shipper.step(name);
    let git = Git::new(context)?;
    let result = async {
        let mut clone = git.command(&context.work_dir);
        clone
            .args(["clone", "--quiet", "--no-checkout", "--", &job.repository])
            .arg(checkout);
        run_checked(clone, &mut log, &context.interrupt)
            .await
            .map_err(|error| explain(&log, "the repository could not be cloned", &error))?;
        let commit = git
            .resolve(checkout, &job.revision, &mut log)
            .await
            .ok_or_else(|| {
                Failure(format!(
                    "the revision {:?} does not exist in {}",
                    job.revision, job.repository
                ))
            })?;
        let mut checkout_command = git.command(checkout);
        checkout_command.args(["checkout", "--quiet", "--detach", &commit]);
        run_checked(checkout_command, &mut log, &context.interrupt)
            .await
            .map_err(|error| explain(&log, "the revision could not be checked out", &error))?;
        log.push(format!("checked out {} at {commit}\n", job.revision).as_bytes());
        Ok(commit)
    }
    .await;
    finish_step(context, name, log, result).await
}

async fn finish_step<T>(
    context: &Context,
    name: &str,
    log: StepLog,
    result: Result<T, Failure>,
) -> Result<T, Failure> {
    log.finish();
    let status = if result.is_ok() {
        StepStatus::Succeeded
    } else {
        StepStatus::Failed
    };
    context.client.step(name, status).await?;
    if result.is_ok() && context.interrupt.is_set() {
        return Err(Failure("the deployment was interrupted".into()));
    }
    result
}

/// "the init step failed: terraform exited with code 1 (Error: ...)".
fn explain(log: &StepLog, what: &str, error: &RunError) -> Failure {
    match log.last_error_line() {
        Some(line) => Failure(format!("{what}: {error} ({line})")),
        None => Failure(format!("{what}: {error}")),
    }
}

async fn step(context: &Context, name: &str, command: Command) -> Result<(), Failure> {
    context.client.step(name, StepStatus::Running).await?;
    let mut log = context.shipper.step(name);
    let result = run_checked(command, &mut log, &context.interrupt)
        .await
        .map_err(|error| explain(&log, &format!("the {name} step failed"), &error));
    finish_step(context, name, log, result).await
}

async fn hooks(context: &Context, flow: &Flow, hook: Hook, dir: &Path) -> Result<(), Failure> {
    let commands = flow.commands(hook);
    if commands.is_empty() {
        return Ok(());
    }
    let name = hook.as_str();
    context.client.step(name, StepStatus::Running).await?;
    let mut log = context.shipper.step(name);
    let mut result = Ok(());
    for command_line in commands {
        log.push(format!("$ {command_line}\n").as_bytes());
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(command_line)
            .current_dir(dir)
            .env_clear()
            .envs(base_environment(&context.job));
        if let Err(error) = run_checked(command, &mut log, &context.interrupt).await {
            result = Err(Failure(format!(
                "the {name} hook failed: `{command_line}` {}",
                exit_words(&error)
            )));
            break;
        }
    }
    finish_step(context, name, log, result).await
}

fn exit_words(error: &RunError) -> String {
    match error.exit_code() {
        Some(code) => format!("exited with code {code}"),
        None => error.to_string(),
    }
}

async fn plan(context: &Context, terraform: &Terraform) -> Result<PlanSummary, Failure> {
    let name = "plan";
    context.client.step(name, StepStatus::Running).await?;
    let mut log = context.shipper.step(name);
    let mut arguments = vec![
        "plan",
        "-input=false",
        "-no-color",
        "-detailed-exitcode",
        "-out",
        PLAN_FILE,
    ];
    if context.job.action == Action::Destroy {
        arguments.push("-destroy");
    }
    let result = async {
        let status = run_logged(terraform.command(&arguments), &mut log, &context.interrupt)
            .await
            .map_err(|error| explain(&log, "the plan step failed", &error))?;
        // -detailed-exitcode: 0 no changes, 2 changes, anything else an error.
        if !matches!(status.code(), Some(0 | 2)) {
            let error = RunError::Exit {
                program: "terraform".into(),
                status,
            };
            return Err(explain(&log, "the plan step failed", &error));
        }
        let shown = run_captured(terraform.command(&["show", "-json", PLAN_FILE]), &mut log)
            .await
            .map_err(|error| explain(&log, "the plan could not be read", &error))?;
        let summary = terraform::plan_summary(&shown)
            .map_err(|e| Failure(format!("the plan could not be read: {e}")))?;
        let text = run_captured(
            terraform.command(&["show", "-no-color", PLAN_FILE]),
            &mut log,
        )
        .await
        .map_err(|error| explain(&log, "the plan could not be read", &error))?;
        let view = terraform::plan_view(&text, &shown, &context.secrets)
            .map_err(|e| Failure(format!("the plan could not be read: {e}")))?;
        context.client.put_plan_view(&view).await?;
        log.push(
            format!(
                "Plan summary: {} to add, {} to change, {} to destroy{}.\n",
                summary.add,
                summary.change,
                summary.destroy,
                if summary.outputs_changed {
                    ", outputs change"
                } else {
                    ""
                }
            )
            .as_bytes(),
        );
        Ok(summary)
    }
    .await;
    finish_step(context, name, log, result).await
}

async fn outputs(context: &Context, terraform: &Terraform) -> Result<Map<String, Value>, Failure> {
    let name = "outputs";
    context.client.step(name, StepStatus::Running).await?;
    let mut log = context.shipper.step(name);
    let result = async {
        let raw = run_captured(terraform.command(&["output", "-json"]), &mut log)
            .await
            .map_err(|error| explain(&log, "the outputs could not be read", &error))?;
        let outputs = terraform::public_outputs(&raw, &context.secrets)
            .map_err(|e| Failure(format!("the outputs could not be read: {e}")))?;
        log.push(format!("{} outputs saved\n", outputs.len()).as_bytes());
        Ok(outputs)
    }
    .await;
    finish_step(context, name, log, result).await
}

/// The runner's own values of `names`, for the commands it starts with a cleared
/// environment.
fn inherited(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_string(), value))
        })
        .collect()
}

/// The variables hooks and Terraform see: `env` ones as they are, `terraform` ones as
/// `TF_VAR_<name>`, and nothing of the runner's own environment but the basics.
fn base_environment(job: &Job) -> BTreeMap<String, String> {
    let mut environment = inherited(&["PATH", "HOME", "TMPDIR", "LANG"]);
    environment.insert("TF_IN_AUTOMATION".into(), "1".into());
    environment.insert("TF_INPUT".into(), "0".into());
    environment.insert("CHECKPOINT_DISABLE".into(), "1".into());
    for variable in &job.variables {
        if CLONE_VARIABLES.contains(&variable.name.as_str()) {
            continue;
        }
        let name = match variable.kind {
            // The API refuses reserved names; one stored before that rule is left out.
            VariableKind::Env if reserved_environment_name(&variable.name).is_some() => continue,
            VariableKind::Env => variable.name.clone(),
            VariableKind::Terraform => format!("TF_VAR_{}", variable.name),
        };
        environment.insert(name, variable.value.clone());
    }
    environment
}

/// Hands Terraform the cost tags as `var.envplane_tags` (a template may use them in
/// its own `default_tags`) and, when the environment asks, adds them to the default
/// AWS provider's.
fn tag_resources(
    context: &Context,
    dir: &Path,
    environment: &mut BTreeMap<String, String>,
) -> Result<(), Failure> {
    let job = &context.job;
    let tags = serde_json::to_string(&job.cost_tags).expect("strings serialize");
    environment
        .entry("TF_VAR_envplane_tags".into())
        .or_insert(tags);
    if !job.tag_resources {
        return Ok(());
    }
    let tagged = terraform::add_default_tags(dir, &job.cost_tags)
        .map_err(|e| Failure(format!("the cost tags could not be added: {e}")))?;
    if !tagged {
        context.shipper.note(
            "init",
            "tag_resources: the template has no provider \"aws\" block without an alias, so its resources are not tagged; add `provider \"aws\" {}` (or use var.envplane_tags in your own default_tags).",
        );
    }
    Ok(())
}

/// Writes the CLI configuration that installs the providers of the tools directory's
/// mirror from there (offline); answers its path, `None` without a mirror.
fn mirror_config(context: &Context) -> Result<Option<String>, Failure> {
    let Some(tools_dir) = &context.tools_dir else {
        return Ok(None);
    };
    let mirror = tools_dir.join(terraform::PROVIDER_MIRROR_DIR);
    if !mirror.is_dir() {
        return Ok(None);
    }
    let failed = |e: std::io::Error| Failure(format!("the provider mirror could not be read: {e}"));
    let Some(config) = terraform::mirror_cli_config(&mirror).map_err(failed)? else {
        return Ok(None);
    };
    let path = context.work_dir.join(terraform::CLI_CONFIG_FILE);
    std::fs::write(&path, config).map_err(failed)?;
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// The resolved Terraform binary and how to run it in the template's directory.
struct Terraform {
    binary: PathBuf,
    dir: PathBuf,
    environment: BTreeMap<String, String>,
}

impl Terraform {
    async fn prepare(context: &Context, dir: &Path) -> Result<Self, Failure> {
        let job = &context.job;
        let binary = async {
            let options = ResolveOptions::for_this_machine(
                context.tools_dir.clone(),
                context.work_dir.join("tools"),
            )?;
            resolve_terraform(&job.iac_version, &options).await
        }
        .await
        .map_err(|error| {
            Failure(format!(
                "Terraform {} is not available: {error}",
                job.iac_version
            ))
        })?;
        let mut environment = base_environment(job);
        if let Some(config) = mirror_config(context)? {
            environment
                .entry("TF_CLI_CONFIG_FILE".into())
                .or_insert(config);
        }
        tag_resources(context, dir, &mut environment)?;
        let declared = terraform::declares_backend(dir)
            .map_err(|e| Failure(format!("the template could not be read: {e}")))?;
        if declared {
            context.shipper.note(
                "init",
                "The template declares its own backend; envplane's state backend is not used.",
            );
        } else {
            terraform::add_backend(dir)
                .map_err(|e| Failure(format!("the backend file could not be written: {e}")))?;
            let address = context.client.state_address(&job.environment_id);
            let lock_address = format!("{address}/lock");
            // Standard methods: the backend's default LOCK and UNLOCK do not pass
            // CloudFront (or many proxies) in front of the API.
            for (name, value) in [
                ("TF_HTTP_ADDRESS", address.as_str()),
                ("TF_HTTP_LOCK_ADDRESS", lock_address.as_str()),
                ("TF_HTTP_LOCK_METHOD", "POST"),
                ("TF_HTTP_UNLOCK_ADDRESS", lock_address.as_str()),
                ("TF_HTTP_UNLOCK_METHOD", "DELETE"),
                // Answers 5xx are retried (waits of 1, 2, 4, 8, 16 and 30 s): a region
                // flip answers 503 until the new region has read it, seconds later.
                ("TF_HTTP_RETRY_MAX", "6"),
            ] {
                environment.insert(name.into(), value.into());
            }
            environment.insert("TF_HTTP_USERNAME".into(), "envplane".into());
            environment.insert("TF_HTTP_PASSWORD".into(), context.state_token.clone());
        }
        Ok(Self {
            binary,
            dir: dir.to_path_buf(),
            environment,
        })
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(arguments)
            .current_dir(&self.dir)
            .env_clear()
            .envs(&self.environment);
        command
    }
}

/// The published SSH host keys of github.com, gitlab.com and bitbucket.org (their
/// fingerprints checked against each host's documentation), trusted when the
/// deployment sets no `ENVPLANE_GIT_KNOWN_HOSTS`.
const BUILT_IN_KNOWN_HOSTS: &str = include_str!("assets/known_hosts");

/// Git with the clone credentials: an HTTPS token as an extra header, or an SSH key;
/// passed through git's environment, never as arguments. The key leaves the disk when
/// this is dropped, after the clone and before any template code runs.
struct Git {
    environment: BTreeMap<String, String>,
    ssh_dir: Option<PathBuf>,
}

impl Drop for Git {
    fn drop(&mut self) {
        if let Some(dir) = &self.ssh_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Git {
    fn new(context: &Context) -> Result<Self, Failure> {
        Self::for_job(&context.job, &context.work_dir)
    }

    fn for_job(job: &Job, work_dir: &Path) -> Result<Self, Failure> {
        let mut environment = inherited(&["PATH", "HOME", "LANG"]);
        environment.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
        let variable = |name: &str| {
            job.variables
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.value.clone())
        };
        if let Some(token) = variable(GIT_TOKEN_VARIABLE) {
            environment.extend(
                https_token_config(&token, &job.repository)
                    .into_iter()
                    .flatten(),
            );
        }
        let mut ssh_dir = None;
        if let Some(key) = variable(GIT_SSH_KEY_VARIABLE) {
            let dir = work_dir.join(".ssh");
            let key_file = write_private_key(&dir, &key)
                .map_err(|e| Failure(format!("the SSH key could not be written: {e}")))?;
            let known_hosts = dir.join("known_hosts");
            let trusted = variable(GIT_KNOWN_HOSTS_VARIABLE)
                .unwrap_or_else(|| BUILT_IN_KNOWN_HOSTS.to_string());
            std::fs::write(&known_hosts, trusted)
                .map_err(|e| Failure(format!("the SSH known hosts could not be written: {e}")))?;
            environment.insert(
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
                    key_file.display(),
                    known_hosts.display()
                ),
            );
            ssh_dir = Some(dir);
        }
        Ok(Self {
            environment,
            ssh_dir,
        })
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        command.current_dir(dir).env_clear().envs(&self.environment);
        command
    }

    /// The commit a branch, tag or commit names, locally or on the origin.
    async fn resolve(&self, checkout: &Path, revision: &str, log: &mut StepLog) -> Option<String> {
        for candidate in [revision.to_string(), format!("origin/{revision}")] {
            if let Some(commit) = self.rev_parse(checkout, &candidate, log).await {
                return Some(commit);
            }
        }
        // A commit no branch holds (a pull request's head from a fork, reachable only
        // through refs/pull/N/head): fetched by its hash, which hosts allow.
        if is_full_commit_hash(revision) {
            let mut fetch = self.command(checkout);
            fetch.args(["fetch", "--quiet", "origin", revision]);
            if run_captured(fetch, log).await.is_ok() {
                return self.rev_parse(checkout, revision, log).await;
            }
        }
        None
    }

    async fn rev_parse(&self, checkout: &Path, name: &str, log: &mut StepLog) -> Option<String> {
        let mut command = self.command(checkout);
        command.args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{name}^{{commit}}"),
        ]);
        let out = run_captured(command, log).await.ok()?;
        let commit = String::from_utf8_lossy(&out).trim().to_string();
        (!commit.is_empty()).then_some(commit)
    }
}

/// A whole SHA-1 or SHA-256 commit hash: only those are fetched by name, so a revision
/// can never pass as an option or a refspec.
fn is_full_commit_hash(revision: &str) -> bool {
    matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The header git sends with the token.
fn token_header(token: &str) -> String {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("Authorization: Basic {credentials}")
}

/// The token as an extra header for the repository's host alone (git's URL-matched
/// configuration), never for another host that a submodule or a redirect names; none
/// for a repository that is not reached over HTTPS.
fn https_token_config(token: &str, repository: &str) -> Option<[(String, String); 3]> {
    let authority = repository.strip_prefix("https://")?.split('/').next()?;
    let host = authority
        .rsplit('@')
        .next()
        .filter(|host| !host.is_empty())?;
    Some([
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        (
            "GIT_CONFIG_KEY_0".into(),
            format!("http.https://{host}/.extraHeader"),
        ),
        ("GIT_CONFIG_VALUE_0".into(), token_header(token)),
    ])
}

fn write_private_key(ssh_dir: &Path, key: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(ssh_dir)?;
    let path = ssh_dir.join("id");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(key.trim_end().as_bytes())?;
    file.write_all(b"\n")?;
    Ok(path)
}

/// Every value the log must never show: sensitive variables, clone credentials (also
/// in the encoded form git sends) and the sandbox's credentials.
pub fn secrets(job: &Job, tokens: &[String]) -> Vec<String> {
    let mut secrets: Vec<String> = job
        .variables
        .iter()
        .filter(|v| v.sensitive || CLONE_CREDENTIAL_VARIABLES.contains(&v.name.as_str()))
        .map(|v| v.value.clone())
        .collect();
    if let Some(git_token) = job.variables.iter().find(|v| v.name == GIT_TOKEN_VARIABLE) {
        secrets.push(token_header(&git_token.value));
    }
    secrets.extend(tokens.iter().cloned());
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use envplane_core::deployment::JobVariable;

    fn job(variables: Vec<JobVariable>) -> Job {
        Job {
            deployment_id: "dep_1".into(),
            environment_id: "env_1".into(),
            action: Action::Apply,
            phase: Phase::PlanAndApply,
            repository: "https://github.com/acme/infra.git".into(),
            revision: "main".into(),
            path: ".".into(),
            iac_version: "1.0.3".into(),
            variables,
            cost_tags: Default::default(),
            tag_resources: false,
        }
    }

    fn variable(name: &str, value: &str, kind: VariableKind, sensitive: bool) -> JobVariable {
        JobVariable {
            name: name.into(),
            value: value.into(),
            kind,
            sensitive,
        }
    }

    #[test]
    fn only_whole_commit_hashes_are_fetched_by_name() {
        assert!(is_full_commit_hash(
            "56eaa7fe046703258ae8e091933ec2a9a024f2d6"
        ));
        assert!(is_full_commit_hash(&"ab".repeat(32)));
        for other in ["main", "56eaa7f", "--upload-pack=touch x", &"g".repeat(40)] {
            assert!(!is_full_commit_hash(other), "{other}");
        }
    }

    #[test]
    fn variables_reach_terraform_and_hooks_by_kind() {
        let job = job(vec![
            variable("region", "eu-west-1", VariableKind::Terraform, false),
            variable("AWS_PROFILE", "dev", VariableKind::Env, false),
            variable(GIT_TOKEN_VARIABLE, "ghp_secret", VariableKind::Env, true),
        ]);
        let environment = base_environment(&job);
        assert_eq!(environment["TF_VAR_region"], "eu-west-1");
        assert_eq!(environment["AWS_PROFILE"], "dev");
        assert!(!environment
            .values()
            .any(|value| value.contains("ghp_secret")));
    }

    #[test]
    fn ssh_clones_check_host_keys_and_leave_no_key_behind() {
        let work = tempfile::tempdir().unwrap();
        let key = variable(
            GIT_SSH_KEY_VARIABLE,
            "-----KEY-----",
            VariableKind::Env,
            true,
        );
        let git = Git::for_job(&job(vec![key.clone()]), work.path()).unwrap();
        let command = &git.environment["GIT_SSH_COMMAND"];
        assert!(command.contains("StrictHostKeyChecking=yes"), "{command}");
        let known_hosts = std::fs::read_to_string(work.path().join(".ssh/known_hosts")).unwrap();
        for host in ["github.com", "gitlab.com", "bitbucket.org"] {
            assert!(
                known_hosts.contains(&format!("{host} ssh-ed25519 ")),
                "{host}"
            );
        }
        drop(git);
        assert!(!work.path().join(".ssh").exists(), "the key stayed on disk");

        let own = variable(
            GIT_KNOWN_HOSTS_VARIABLE,
            "git.acme.test ssh-ed25519 AAAA",
            VariableKind::Env,
            false,
        );
        let _git = Git::for_job(&job(vec![key, own]), work.path()).unwrap();
        let known_hosts = std::fs::read_to_string(work.path().join(".ssh/known_hosts")).unwrap();
        assert_eq!(known_hosts, "git.acme.test ssh-ed25519 AAAA");
    }

    #[test]
    fn the_git_token_goes_to_the_repository_host_only() {
        let config = https_token_config("ghp_x", "https://ci@github.com/acme/infra.git").unwrap();
        assert_eq!(config[1].1, "http.https://github.com/.extraHeader");
        assert!(https_token_config("ghp_x", "git@github.com:acme/infra.git").is_none());
        assert!(https_token_config("ghp_x", "ssh://git@github.com/acme/infra.git").is_none());
    }

    #[test]
    fn every_secret_form_is_masked() {
        let job = job(vec![
            variable("password", "hunter2", VariableKind::Terraform, true),
            variable("region", "eu-west-1", VariableKind::Terraform, false),
            variable(GIT_TOKEN_VARIABLE, "ghp_secret", VariableKind::Env, false),
            variable("empty", "", VariableKind::Env, true),
        ]);
        let secrets = secrets(&job, &["ert_token".to_string()]);
        assert!(secrets.contains(&"hunter2".to_string()));
        assert!(secrets.contains(&"ghp_secret".to_string()));
        assert!(secrets.contains(&"ert_token".to_string()));
        assert!(secrets
            .iter()
            .any(|s| s.starts_with("Authorization: Basic ")));
        assert!(!secrets.contains(&"eu-west-1".to_string()));
        assert!(!secrets.contains(&String::new()));
    }
}
