//! The AWS emulator (moto server) the adapter tests, the end-to-end tests and the
//! benchmarks run against. `scripts/test` starts it and sets `AWS_ENDPOINT_URL`; nothing
//! here reaches real AWS. Compiled for this crate's tests and with the `emulator`
//! feature only.

use std::collections::HashMap;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use envplane_core::ports::Queue;
use envplane_core::Platform;

use crate::config::AwsSettings;
use crate::deployer::{handle_batch, DEFAULT_REDRIVE_LIMIT};
use crate::task_events::{EcsContainer, EcsTaskStateChange};

/// The SDK configuration for the emulator at `AWS_ENDPOINT_URL`.
///
/// Panics with instructions when the emulator is not running: a test that needs it
/// must not pass by skipping.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = endpoint();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .endpoint_url(endpoint)
        // The emulator answers 500 when two transactions on one table overlap (it copies
        // the table without a lock); the SDK retries a 500, and more attempts ride it out.
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

pub(crate) fn endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: start the emulator with \
             `source scripts/lib/install.sh && ensure_moto && start_moto` (scripts/test does)"
        )
    });
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at the local emulator, not {endpoint}"
    );
    endpoint
}

/// A name no other test run uses, for tables, queues, buckets and clusters.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        envplane_core::ids::new_id("t").replace('_', "-")
    )
}

/// Keeps every ECS task at its status until it is stopped: by default the emulator moves
/// a task one status further on each DescribeTasks, until STOPPED.
pub async fn manual_task_progression() {
    let transition = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            endpoint()
        ))
        .json(&serde_json::json!({
            "model_name": "ecs::task",
            "transition": {"progression": "manual", "times": 999}
        }))
        .send()
        .await
        .expect("the emulator's state manager answers");
    assert!(transition.status().is_success(), "{}", transition.status());
}

/// Calls the emulator's EC2 query API (nothing else needs an EC2 SDK) and returns the
/// text of the first `<tag>` of the answer.
async fn ec2(params: &[(&str, &str)], tag: &str) -> String {
    let mut form = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    let answer = reqwest::Client::new()
        .post(format!("{}/", endpoint()))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=emulator",
        )
        .form(&form)
        .send()
        .await
        .expect("the emulator answers EC2 calls");
    assert!(
        answer.status().is_success(),
        "EC2 {params:?}: {}",
        answer.status()
    );
    let text = answer.text().await.expect("EC2 answer");
    let open = format!("<{tag}>");
    let start = text
        .find(&open)
        .map(|at| at + open.len())
        .unwrap_or_else(|| panic!("no <{tag}> in the EC2 answer: {text}"));
    let end = start + text[start..].find('<').expect("a closing tag");
    text[start..end].to_string()
}

/// The sandboxes' network: a VPC with DNS host names (RunTask with awsvpc needs them in
/// the emulator), a private subnet and a security group. Returns (subnet, group).
pub async fn sandbox_network() -> (String, String) {
    let vpc = ec2(
        &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
        "vpcId",
    )
    .await;
    ec2(
        &[
            ("Action", "ModifyVpcAttribute"),
            ("VpcId", &vpc),
            ("EnableDnsHostnames.Value", "true"),
        ],
        "requestId",
    )
    .await;
    let subnet = ec2(
        &[
            ("Action", "CreateSubnet"),
            ("VpcId", &vpc),
            ("CidrBlock", "10.0.1.0/24"),
        ],
        "subnetId",
    )
    .await;
    let group_name = unique_name("envplane-sandbox");
    let security_group = ec2(
        &[
            ("Action", "CreateSecurityGroup"),
            ("GroupName", &group_name),
            ("GroupDescription", "envplane sandboxes: no inbound"),
            ("VpcId", &vpc),
        ],
        "groupId",
    )
    .await;
    (subnet, security_group)
}

/// A cluster and the runner's Fargate task definition (container `runner`; the emulator
/// needs its memory on the container too). Returns (cluster, task definition family).
pub async fn runner_cluster(ecs: &aws_sdk_ecs::Client) -> (String, String) {
    let cluster = unique_name("envplane");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("create cluster");
    let family = unique_name("envplane-runner");
    ecs.register_task_definition()
        .family(&family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("runner")
                .image("ghcr.io/envplane/runner:test")
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .expect("register the runner task definition");
    (cluster, family)
}

/// Every resource of an installation, as `infra/` declares it, created afresh in the
/// emulator: the KMS key, the table, the artifacts and launch buckets, the deployments queue with its
/// dead-letter queue, the sandbox network, the cluster and the runner task definition.
pub struct Stack {
    pub sdk: SdkConfig,
    /// What the functions would read from their environment.
    pub settings: AwsSettings,
    pub dead_letter_queue_url: String,
}

impl Stack {
    /// `api_url` is where sandboxes call the API back. The queue redelivers a message
    /// after one second and moves it to the dead-letter queue after
    /// [`DEFAULT_REDRIVE_LIMIT`] deliveries.
    pub async fn create(api_url: &str) -> Self {
        manual_task_progression().await;
        let sdk = sdk_config().await;
        let kms_key_id = aws_sdk_kms::Client::new(&sdk)
            .create_key()
            .description("envplane installation key")
            .send()
            .await
            .expect("create the KMS key")
            .key_metadata
            .expect("key metadata")
            .key_id;
        let table_name = unique_name("envplane");
        crate::dynamodb::create_table_with_key(
            &aws_sdk_dynamodb::Client::new(&sdk),
            &table_name,
            Some(&kms_key_id),
        )
        .await
        .expect("create the table");
        let artifacts_bucket = unique_name("envplane-artifacts");
        let s3 = crate::config::s3_client(&sdk, true);
        s3.create_bucket()
            .bucket(&artifacts_bucket)
            .send()
            .await
            .expect("create the artifacts bucket");
        s3.put_bucket_versioning()
            .bucket(&artifacts_bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("turn on the bucket's versioning");
        let launch_bucket = unique_name("envplane-launch");
        s3.create_bucket()
            .bucket(&launch_bucket)
            .send()
            .await
            .expect("create the launch bucket");
        let (queue_url, dead_letter_queue_url) = deployment_queues(&sdk).await;
        let (subnet, security_group) = sandbox_network().await;
        let (ecs_cluster, runner_task_definition) =
            runner_cluster(&aws_sdk_ecs::Client::new(&sdk)).await;
        let settings = AwsSettings {
            table_name,
            queue_url,
            kms_key_id,
            artifacts_bucket,
            launch_bucket,
            s3_path_style: true,
            api_url: api_url.to_string(),
            ecs_cluster,
            runner_task_definition,
            runner_container: "runner".into(),
            subnets: vec![subnet],
            security_groups: vec![security_group],
            max_parallel_deployments: 50,
            quotas: Default::default(),
            reports_queue_url: None,
            github_api_url: "http://127.0.0.1:9".into(),
            // The tests' notification targets listen on loopback.
            allow_private_notification_targets: true,
            regions: None,
            egress_ips: Vec::new(),
        };
        Self {
            sdk,
            settings,
            dead_letter_queue_url,
        }
    }
}

/// A standard queue with a unique name from `prefix`; returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    sqs.create_queue()
        .queue_name(unique_name(prefix))
        .send()
        .await
        .expect("create a queue")
        .queue_url
        .expect("queue URL")
}

/// The deployments queue and its dead-letter queue; returns their URLs.
async fn deployment_queues(sdk: &SdkConfig) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let name = unique_name("envplane-deployments");
    let dead_letter_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url
        .expect("queue URL");
    let dead_letter_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dead-letter queue attributes")
        .attributes
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("dead-letter queue ARN");
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": DEFAULT_REDRIVE_LIMIT,
    });
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            redrive_policy.to_string(),
        )
        .send()
        .await
        .expect("create the deployments queue")
        .queue_url
        .expect("queue URL");
    (url, dead_letter_url)
}

/// What the SQS event source mapping does for the deployer: receives one batch of up to
/// ten records (long-polling up to `wait_seconds`), hands it to [`handle_batch`] and
/// deletes the records it did not report as failures; those come back after the
/// visibility timeout. Returns how many records it delivered.
pub async fn deliver_batch(
    platform: &Platform,
    queue: &dyn Queue,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Result<usize, String> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|error| {
            format!(
                "ReceiveMessage: {}",
                crate::error_code::aws_error_code(&error)
            )
        })?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let response = handle_batch(platform, queue, sqs_event(&messages), DEFAULT_REDRIVE_LIMIT).await;
    for message in &messages {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|failure| Some(failure.item_identifier.as_str()) == message.message_id());
        if failed {
            continue;
        }
        let deleted = sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await;
        if let Err(error) = deleted {
            // Received again after its visibility timeout ran out while the batch was
            // handled: the newer delivery owns it now (SQS itself accepts the stale
            // handle and may keep the message; the emulator refuses it).
            let code = crate::error_code::aws_error_code(&error);
            if code != "ReceiptHandleIsInvalid" {
                return Err(format!("DeleteMessage: {code}"));
            }
        }
    }
    Ok(messages.len())
}

/// The Lambda event the event source mapping makes of received messages.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|message| {
            let attributes: HashMap<String, String> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_string(), value.clone()))
                .collect();
            serde_json::json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records }))
        .expect("an SQS event from received messages")
}

/// The EventBridge "ECS Task State Change" event for `task`, as described by ECS, with
/// the exit code of its container.
pub fn task_state_change(
    task: &aws_sdk_ecs::types::Task,
    exit_code: Option<i32>,
) -> EventBridgeEvent<EcsTaskStateChange> {
    let detail = EcsTaskStateChange {
        task_arn: task.task_arn().unwrap_or_default().to_string(),
        last_status: task.last_status().unwrap_or_default().to_string(),
        started_by: task.started_by().map(str::to_string),
        group: task.group().map(str::to_string),
        stop_code: task.stop_code().map(|code| code.as_str().to_string()),
        stopped_reason: task.stopped_reason().map(str::to_string),
        containers: vec![EcsContainer {
            name: "runner".into(),
            exit_code,
        }],
    };
    serde_json::from_value(serde_json::json!({
        "version": "0",
        "id": unique_name("event"),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [task.task_arn()],
        "detail": detail,
    }))
    .expect("an EventBridge event")
}
