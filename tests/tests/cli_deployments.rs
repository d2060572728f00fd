//! End to end: deployments driven with the `envplane` CLI against `envplane serve`, which
//! runs them for real (the runner, Terraform 1.0.3, bubblewrap sandboxes).

use envplane_e2e::cli::{id, Server};
use envplane_e2e::{git_repository, GREETING_CONFIG};

#[test]
fn deploy_follow_logs_list_and_state() {
    let server = Server::start();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let environment = server.environment(&repository, "web", &[]);

    let applied = server.ok(&["deploy", &environment, "--wait"]);
    assert!(applied.contains("succeeded"), "{applied}");
    for step in ["clone", "init", "plan", "apply", "outputs"] {
        assert!(
            applied.contains(step),
            "step {step} missing from\n{applied}"
        );
    }
    assert!(
        !applied.contains('\x1b'),
        "no cursor moves without a terminal"
    );
    let deployment = server.latest(&environment);

    let logs = server.ok(&["logs", &deployment]);
    assert!(logs.contains("Apply complete!"), "{logs}");
    assert_eq!(server.ok(&["logs", &deployment, "--follow"]), logs);

    let plan = server.json(&["deploy", &environment, "--plan-only", "--wait"]);
    assert_eq!(plan["status"], "succeeded", "{plan}");
    assert_eq!(plan["action"], "plan");
    let plan_id = plan["id"].as_str().unwrap();
    let text = server.ok(&["plan", "show", plan_id]);
    assert!(text.contains("No changes."), "{text}");
    let shown = server.json(&["plan", "show", plan_id]);
    assert_eq!(shown["plan_summary"], plan["plan_summary"], "{shown}");
    assert_eq!(shown["json"]["terraform_version"], "1.0.3", "{shown}");

    let listing = server.ok(&["deployments", &environment]);
    assert!(listing.contains(&deployment), "{listing}");
    assert!(
        listing.contains("plan") && listing.contains("apply"),
        "{listing}"
    );
    assert!(listing.contains("+0 ~0 -0"), "{listing}");
    let page = server.json(&["deployments", &environment, "--limit", "1", "--all"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let shown = server.ok(&["deployment", "show", &deployment]);
    assert!(
        shown.contains("outputs") && shown.contains("succeeded"),
        "{shown}"
    );

    let refused = server.run(&["cancel", &deployment], None);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("HTTP 409"), "{}", refused.stderr);

    let versions = server.ok(&["state", "versions", &environment]);
    assert!(versions.contains(&deployment), "{versions}");
    let state = server.json(&["state", "show", &environment, "1"]);
    assert!(state.is_object(), "{state}");

    // Queued without --wait: the table names it; --follow then waits for its log's end.
    let queued = server.ok(&["deploy", &environment, "--destroy"]);
    assert!(queued.contains("destroy"), "{queued}");
    let destroy = server.latest(&environment);
    assert!(queued.contains(&destroy), "{queued}");
    let followed = server.ok(&["logs", &destroy, "--follow"]);
    assert!(followed.contains("Apply complete!"), "{followed}");
}

#[test]
fn approvals_and_failures_set_the_exit_code() {
    let server = Server::start();
    let repository = git_repository(&[("main.tf", GREETING_CONFIG)]);
    let environment = server.environment(
        &repository,
        "prod",
        &["--requires-approval", "--allow-self-approval"],
    );

    let waiting = server.ok(&["deploy", &environment, "--wait"]);
    assert!(waiting.contains("waiting for approval"), "{waiting}");
    let deployment = server.latest(&environment);
    let approved = server.ok(&["approve", &deployment, "--wait"]);
    assert!(approved.contains("succeeded"), "{approved}");

    let waiting = server.json(&["deploy", &environment, "--wait"]);
    assert_eq!(waiting["status"], "waiting_for_approval", "{waiting}");
    let rejected = server.ok(&["reject", &id(&waiting)]);
    assert!(rejected.contains("rejected"), "{rejected}");

    let broken = server.environment(&repository, "broken", &["--revision", "no-such-branch"]);
    let failed = server.run(&["deploy", &broken, "--wait"], None);
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert!(failed.stdout.contains("Reason:"), "{}", failed.stdout);
    assert!(failed.stderr.contains("failed"), "{}", failed.stderr);
}
