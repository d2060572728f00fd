//! Template code is hostile: each test plays one attack from a template's hooks, with
//! real Terraform in a real sandbox, and checks that it fails. (The attacks through the
//! API, such as variables that would hijack the runner, are in `bad_input.rs`; masking's
//! encodings in `runner/src/mask.rs`.) See docs/security.md.

use envplane_core::service::Quotas;
use envplane_e2e::cli::Server;
use envplane_e2e::network::TestNetwork;
use envplane_e2e::GREETING_CONFIG;
use envplane_e2e::{git_repository, spawn_app, spawn_app_with_quotas};

/// Where the test's own listeners sit, inside its own namespace: the cloud metadata
/// address, the three private ranges and the shared range, and one address that stands
/// for the internet (a documentation range, routed nowhere but to this namespace).
const BLOCKED: [&str; 5] = [
    "169.254.169.254",
    "10.99.0.1",
    "172.20.0.1",
    "192.168.77.1",
    "100.64.0.1",
];
const INTERNET: &str = "198.51.100.7";
const PORT: u16 = 8080;

/// A hook that tries every address and says, per address, whether it got through.
fn probe_script(api_port: &str) -> String {
    let mut urls: Vec<String> = BLOCKED
        .iter()
        .chain([&INTERNET])
        .map(|address| format!("http://{address}:{PORT}/"))
        .collect();
    // The platform's API on the host's loopback, directly and through slirp's gateway.
    urls.push(format!("http://127.0.0.1:{api_port}/health"));
    urls.push(format!("http://10.0.2.2:{api_port}/health"));
    let mut script = String::from("echo \"uid=$(id -u) niceness=$(nice)\"\n");
    for url in urls {
        script.push_str(&format!(
            "if curl -s -m 10 -o /dev/null {url}; then echo \"reached {url}\"; \
             else echo \"blocked {url}\"; fi\n"
        ));
    }
    script
}

#[test]
fn the_sandbox_reaches_the_internet_and_nothing_of_the_host() {
    let mut addresses: Vec<String> = BLOCKED.iter().map(|a| format!("{a}/32")).collect();
    addresses.push(format!("{INTERNET}/32"));
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let Some(network) = TestNetwork::create(&addresses) else {
        return;
    };
    let blocked_hits: Vec<_> = BLOCKED
        .iter()
        .map(|a| (a, network.listen(a, PORT)))
        .collect();
    let internet_hits = network.listen(INTERNET, PORT);
    let server = Server::start_in_network(&network.path);
    let api_port = server.url.rsplit(':').next().unwrap().to_string();
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("probe.sh", &probe_script(&api_port)),
        ("envplane.yml", "hooks:\n  before_plan: sh ./probe.sh\n"),
    ]);
    let environment = server.environment(&repository, "probe", &[]);

    let planned = server.ok(&["deploy", &environment, "--plan-only", "--wait"]);
    assert!(planned.contains("succeeded"), "{planned}");
    let logs = server.ok(&["logs", &server.latest(&environment)]);

    assert!(
        logs.contains("uid=65534 niceness=10"),
        "template code runs unprivileged, below the server's priority: {logs}"
    );
    assert!(
        logs.contains(&format!("reached http://{INTERNET}:{PORT}/")),
        "egress works: {logs}"
    );
    assert_eq!(internet_hits.count(), 1);
    for (address, hits) in blocked_hits {
        assert!(
            logs.contains(&format!("blocked http://{address}:{PORT}/")),
            "{address}: {logs}"
        );
        assert_eq!(hits.count(), 0, "a connection reached {address}");
    }
    for url in ["127.0.0.1", "10.0.2.2"] {
        assert!(
            logs.contains(&format!("blocked http://{url}:{api_port}/health")),
            "the API on the host's loopback through {url}: {logs}"
        );
    }
}

/// A hook that tries system calls the seccomp filters refuse (a new namespace through
/// `unshare`, and through `clone`'s flags where Python is there to make the call), looks
/// for the sandbox's credentials where template code can look (every process's
/// environment, the runner's included) and tries each on the runner's calls, through the
/// API socket as the runner does.
const CREDENTIAL_HUNT: &str = r#"
if unshare -U true 2>/dev/null; then echo "new namespace allowed"; else echo "new namespace refused"; fi
command -v python3 >/dev/null && python3 -c '
import ctypes, os
clone = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
pid = ctypes.CDLL(None, use_errno=True).syscall(clone, 0x10000000 | 17, 0, 0, 0, 0)
if pid == 0:
    os._exit(0)
print("clone into a new namespace", "refused" if pid < 0 else "allowed")
'
api=/run/envplane/api.sock
for dir in /proc/[0-9]*; do
  if [ "$(cat $dir/comm 2>/dev/null)" = "envplane-runner" ]; then
    if cat $dir/environ >/dev/null 2>&1; then echo "runner environment readable"; else echo "runner environment unreadable"; fi
  fi
done
found=$(for dir in /proc/[0-9]*; do tr '\0' '\n' < $dir/environ 2>/dev/null; done | sed -n 's/^[A-Z_]*=\(ert_[0-9a-f]*\)$/\1/p' | sort -u)
echo "credentials found: $(echo "$found" | grep -c ert_)"
for token in $found; do
  trade=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket $api -X POST -H "Authorization: Bearer $token" http://envplane/v1/runner/session)
  step=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket $api -X POST -H "Authorization: Bearer $token" -H 'content-type: application/json' -d '{"name":"forged","status":"failed"}' http://envplane/v1/runner/steps)
  echo "a found credential: trade $trade, step $step"
done
"#;

#[tokio::test]
async fn template_code_finds_no_credential_that_opens_the_runners_calls() {
    if let envplane_local::Isolation::Unavailable(why) = envplane_local::Isolation::detect() {
        eprintln!("SKIPPED: sandboxes cannot be made on this machine: {why}");
        return;
    }
    let app = spawn_app().await;
    let repository = git_repository(&[
        ("main.tf", GREETING_CONFIG),
        ("hunt.sh", CREDENTIAL_HUNT),
        ("envplane.yml", "hooks:\n  before_plan: sh ./hunt.sh\n"),
    ]);
    let seeded = app.environment_on(&repository, "hunt", false).await;
    let id = app.deploy(&seeded.environment_id, "apply").await;
    let done = app.wait_for(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let names: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"forged"),
        "a forged step landed: {names:?}"
    );
    let logs = app.logs(&id).await;
    assert!(logs.contains("runner environment unreadable"), "{logs}");
    assert!(
        logs.contains("new namespace refused"),
        "the seccomp filter: {logs}"
    );
    if std::path::Path::new("/usr/bin/python3").exists() {
        assert!(
            logs.contains("clone into a new namespace refused"),
            "the seccomp filter on clone's flags: {logs}"
        );
    }
    assert!(
        !logs.contains("ert_"),
        "a credential reached the log: {logs}"
    );
    for line in logs
        .lines()
        .filter(|line| line.contains("a found credential"))
    {
        assert!(
            line.contains("trade 401") && (line.contains("step 401") || line.contains("step 403")),
            "{line}"
        );
    }
}

/// A template that floods the log, reports step after step or grows the state without
/// end meets the deployment's quotas: it is stopped, failed, with a reason that names
/// the quota, and the next deployment runs.
#[tokio::test]
async fn quotas_end_what_would_exhaust_the_platform() {
    let app = spawn_app_with_quotas(Quotas {
        log_bytes: 64 * 1024,
        steps: 6,
        state_bytes: 64,
        ..Quotas::default()
    })
    .await;
    let flood = [
        ("main.tf", GREETING_CONFIG),
        ("envplane.yml", "hooks:\n  before_plan: yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 1000000\n"),
    ];
    let many_steps = [
        ("main.tf", GREETING_CONFIG),
        (
            "envplane.yml",
            "hooks:\n  before_init: \"true\"\n  after_init: \"true\"\n  before_plan: \"true\"\n  after_plan: \"true\"\n",
        ),
    ];
    for (files, name, reason) in [
        (&flood, "flood", "quota of 65536 bytes"),
        (&many_steps, "steps", "quota of 6 steps"),
    ] {
        let failed = app.deploy_until_done(files, name, "plan").await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(
            failed["reason"].as_str().unwrap().contains(reason),
            "{failed}"
        );
    }

    let failed = app
        .deploy_until_done(&[("main.tf", GREETING_CONFIG)], "state", "apply")
        .await;
    assert_eq!(
        failed["status"], "failed",
        "a state over its quota was saved: {failed}"
    );
    let logs = app.logs(failed["id"].as_str().unwrap()).await;
    assert!(logs.contains("413"), "{logs}");
    let versions = app
        .get(
            &format!(
                "/v1/environments/{}/state-versions",
                failed["environment_id"].as_str().unwrap()
            ),
            &app.admin_key,
        )
        .await
        .expect(200);
    assert_eq!(versions["items"].as_array().unwrap().len(), 0, "{versions}");
}
