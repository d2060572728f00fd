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

  reserved_concurrency = merge(
    { api = -1, deployer = -1, task-events = -1, reaper = 1, webhook = -1, reporter = -1 },
    var.function_reserved_concurrency,
  )

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
    RUST_LOG                          = var.log_level
  }

  environment = {
    api = local.common_environment
    deployer = merge(local.common_environment, {
      ENVPLANE_REDRIVE_LIMIT = tostring(var.redrive_limit)
    })
    task-events = local.common_environment
    reaper = merge(local.common_environment, {
      ENVPLANE_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.dead_letters.url
      ENVPLANE_REGION_ROLE           = var.region_role
    })
    webhook  = local.common_environment
    reporter = local.common_environment
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = toset(local.functions)

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "function" {
  for_each = toset(local.functions)

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

  depends_on = [
    aws_cloudwatch_log_group.function,
    aws_iam_role_policy.function,
  ]
}
