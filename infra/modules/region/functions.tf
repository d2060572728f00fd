# The six functions (docs/aws.md): Rust binaries built with
#   scripts/build-lambdas (cargo lambda build --profile lambda-release --arm64 ...)
# into target/lambda/<function>/bootstrap.zip, on provided.al2023, arm64.
#
# Each main.rs reads its configuration with `AwsSettings::from_env`, which requires the
# whole common set below in every function (a missing one stops it at start), even the
# names a function's wiring never calls (task-events and the reaper get the cluster,
# key and bucket names but no permission on them).

locals {
  functions = ["api", "deployer", "task-events", "reaper", "webhook", "reporter"]

  memory = merge(
    { api = 512, deployer = 256, task-events = 256, reaper = 256, webhook = 256, reporter = 256 },
    var.function_memory_mb,
  )

  # The reporter handles a batch of 10 one after the other; a notification target may
  # take the sender's 10 s timeout each, so a whole batch must fit in 180 s.
  timeout = merge(
    { api = 29, deployer = 25, task-events = 30, reaper = 300, webhook = 29, reporter = 180 },
    var.function_timeout_seconds,
  )

  # Reserved concurrency both reserves and caps. The api (internet-facing) and the
  # webhook are capped so a flood of requests cannot take the account's concurrency from
  # the deployer and task-events, which get their own reserve. The deployer's reserve
  # stays at or above the event source mapping's maximum concurrency, so the mapping
  # never hits a throttle (which would count a receive against the redrive limit).
  # Total 96 by default: the account's concurrency limit must be at least 196 (Lambda
  # keeps 100 unreserved).
  reserved_concurrency = merge(
    {
      api         = 50
      deployer    = max(10, var.deployer_max_concurrency)
      task-events = 10
      reaper      = 1
      webhook     = 20
      reporter    = 5
    },
    var.function_reserved_concurrency,
  )

  # Every NAT address of both regions: this region's own (from this state) and the
  # other region's (an input, from its own state), deduplicated and sorted.
  all_egress_ips = sort(distinct(concat(aws_eip.nat[*].public_ip, var.egress_ips)))

  # docs/aws.md, "Configuration". ENVPLANE_S3_PATH_STYLE stays unset (false) and
  # SSL_CERT_FILE unset (the built-in Amazon roots).
  common_environment = {
    ENVPLANE_TABLE_NAME               = var.table_name
    ENVPLANE_QUEUE_URL                = aws_sqs_queue.deployments.url
    ENVPLANE_REPORTS_QUEUE_URL        = aws_sqs_queue.reports.url
    ENVPLANE_GITHUB_API_URL           = var.github_api_url
    ENVPLANE_KMS_KEY_ID               = var.kms_key_arn
    ENVPLANE_ARTIFACTS_BUCKET         = aws_s3_bucket.artifacts.bucket
    ENVPLANE_LAUNCH_BUCKET            = aws_s3_bucket.launch.bucket
    ENVPLANE_API_URL                  = local.sandbox_api_url
    ENVPLANE_ECS_CLUSTER              = aws_ecs_cluster.sandboxes.name
    ENVPLANE_RUNNER_TASK_DEFINITION   = aws_ecs_task_definition.runner.family
    ENVPLANE_RUNNER_CONTAINER         = local.runner_container
    ENVPLANE_SUBNETS                  = join(",", aws_subnet.private[*].id)
    ENVPLANE_SECURITY_GROUPS          = aws_security_group.runner.id
    ENVPLANE_MAX_PARALLEL_DEPLOYMENTS = tostring(var.max_parallel_deployments)
    ENVPLANE_QUOTA_LOG_BYTES          = tostring(var.deployment_quotas.log_bytes)
    ENVPLANE_QUOTA_STEPS              = tostring(var.deployment_quotas.steps)
    ENVPLANE_QUOTA_STATE_BYTES        = tostring(var.deployment_quotas.state_bytes)
    ENVPLANE_QUOTA_PLAN_BYTES         = tostring(var.deployment_quotas.plan_bytes)
    ENVPLANE_REGION                   = local.region
    ENVPLANE_HOME_REGION              = var.home_region
    RUST_LOG                          = var.log_level
  }

  environment = {
    # ENVPLANE_ORIGIN_SECRET_ARN: the api refuses a request whose x-envplane-origin header
    # is neither the AWSCURRENT nor the AWSPREVIOUS value of that secret (only CloudFront
    # sends it). ENVPLANE_EGRESS_IPS: the addresses customers allow-list, published by the
    # api.
    api = merge(local.common_environment, {
      ENVPLANE_EGRESS_IPS        = join(",", local.all_egress_ips)
      ENVPLANE_ORIGIN_SECRET_ARN = var.origin_secret_arn
    })
    deployer = merge(local.common_environment, {
      ENVPLANE_REDRIVE_LIMIT = tostring(var.redrive_limit)
    })
    task-events = local.common_environment
    reaper = merge(local.common_environment, {
      ENVPLANE_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.dead_letters.url
    })
    webhook = merge(local.common_environment, {
      ENVPLANE_ORIGIN_SECRET_ARN = var.origin_secret_arn
    })
    reporter = local.common_environment
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = toset(local.functions)

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "function" {
  for_each = toset(local.functions)
  #checkov:skip=CKV_AWS_117:The functions call AWS APIs and GitHub only; a VPC would add a NAT hop and cold-start latency and protect nothing they reach (the sandboxes, which run customer code, are the ones in the VPC).
  #checkov:skip=CKV_AWS_116:No function needs a function-level DLQ: the SQS-triggered ones (deployer, reporter) have a redrive policy on their source queue, api and webhook are synchronous (the caller sees the error), task-events has an on-failure destination queue (events.tf), the reaper's next scheduled run redoes the work.
  #checkov:skip=CKV_AWS_173:The environment holds names, ARNs and URLs only (no secret: the origin secret is fetched from Secrets Manager at run time); Lambda encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_272:No code signing: the zips are built by scripts/build-lambdas and uploaded by Terraform from the same trusted pipeline; signing needs an AWS Signer profile this project does not have yet (README known gaps).

  function_name = "${var.name}-${each.key}"
  description   = "envplane ${each.key}"
  role          = aws_iam_role.function[each.key].arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = ["arm64"]

  filename         = var.function_packages[each.key]
  source_code_hash = filebase64sha256(var.function_packages[each.key])

  memory_size                    = local.memory[each.key]
  timeout                        = local.timeout[each.key]
  reserved_concurrent_executions = local.reserved_concurrency[each.key]

  environment {
    variables = local.environment[each.key]
  }

  # No X-Ray SDK in the functions: PassThrough only propagates a trace header that comes
  # in, at no cost and without X-Ray permissions.
  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [
    aws_cloudwatch_log_group.function,
    aws_iam_role_policy.function,
  ]
}
