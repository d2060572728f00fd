//! The function's configuration is read once at start: a missing or invalid variable
//! stops it with a message naming the variable, before it asks Lambda for any event.

use std::process::Command;

const SETTINGS: [(&str, &str); 11] = [
    ("ENVPLANE_TABLE_NAME", "envplane"),
    (
        "ENVPLANE_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/deployments",
    ),
    ("ENVPLANE_KMS_KEY_ID", "alias/envplane"),
    ("ENVPLANE_ARTIFACTS_BUCKET", "envplane-artifacts"),
    ("ENVPLANE_LAUNCH_BUCKET", "envplane-launch"),
    ("ENVPLANE_API_URL", "https://api.envplane.example.com"),
    ("ENVPLANE_ECS_CLUSTER", "envplane"),
    ("ENVPLANE_RUNNER_TASK_DEFINITION", "envplane-runner"),
    ("ENVPLANE_SUBNETS", "subnet-1,subnet-2"),
    ("ENVPLANE_SECURITY_GROUPS", "sg-1"),
    ("AWS_REGION", "us-east-1"),
];

/// Starts the deployer with `SETTINGS` less `without`, plus `extra`; returns its stderr.
fn start(without: &str, extra: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .env_clear()
        .envs(
            SETTINGS
                .iter()
                .filter(|(name, _)| *name != without)
                .copied(),
        )
        .envs(extra.iter().copied())
        .output()
        .expect("run the deployer");
    assert!(!output.status.success(), "it must not start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn each_missing_variable_is_named() {
    for (name, _) in SETTINGS {
        let error = start(name, &[]);
        assert!(
            error.contains(&format!("missing configuration: set {name}")),
            "{name}: {error}"
        );
    }
}

#[test]
fn invalid_values_are_named() {
    for (name, value) in [
        ("ENVPLANE_API_URL", "http://api.example.com"),
        ("ENVPLANE_MAX_PARALLEL_DEPLOYMENTS", "many"),
        ("ENVPLANE_QUOTA_LOG_BYTES", "64MiB"),
        ("ENVPLANE_QUOTA_STEPS", "0"),
        ("ENVPLANE_QUOTA_STATE_BYTES", "-1"),
        ("ENVPLANE_QUOTA_PLAN_BYTES", "1e9"),
        ("ENVPLANE_S3_PATH_STYLE", "yes"),
        ("ENVPLANE_REDRIVE_LIMIT", "0"),
        ("SSL_CERT_FILE", "/nonexistent/ca-bundle.crt"),
        ("SSL_CERT_FILE", "/dev/null"),
        ("RUST_LOG", "envplane_aws=loud"),
        ("AWS_ENDPOINT_URL", "localhost:4566"),
        ("AWS_ENDPOINT_URL", "https://"),
    ] {
        let error = start("", &[(name, value)]);
        assert!(
            error.contains(&format!("invalid configuration {name}")),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_system_ca_bundle_is_accepted() {
    let bundle = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).exists())
    .expect("the machine has a CA bundle");
    // With a valid configuration the function goes on to read the Lambda runtime's
    // variables, which are not set here.
    let error = start("", &[("SSL_CERT_FILE", bundle)]);
    assert!(error.contains("AWS_LAMBDA_FUNCTION_NAME"), "{error}");
}
