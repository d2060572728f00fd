# One region's platform: the sandboxes' network, the artifacts bucket (replicated to the
# peer region), the queues, the ECS cluster and runner task definition, the six functions
# with their triggers, the HTTP API, and the alarms. Instantiated once per region by
# infra/region (its own state per region); `active` switches the triggers of a passive
# region off. IAM role names (account-wide) carry the region, so the two instances do
# not collide.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Names mirror the emulator stack (shared/aws/src/emulator.rs `Stack::create`):
  # `<name>-deployments` and `<name>-deployments-dlq`, family `<name>-runner`,
  # container `runner`.
  deployments_queue_name  = "${var.name}-deployments"
  dead_letter_queue_name  = "${var.name}-deployments-dlq"
  cluster_name            = var.name
  runner_family           = "${var.name}-runner"
  runner_container        = "runner"
  artifacts_bucket_name   = "${var.name}-artifacts-${local.account_id}-${local.region}"
  launch_bucket_name      = "${var.name}-launch-${local.account_id}-${local.region}"
  runner_log_group_name   = "/ecs/${var.name}-runner"
  api_access_log_group    = "/aws/apigateway/${var.name}-api"
  flow_log_group_name     = "/aws/vpc/${var.name}-sandboxes"
  kms_via_dynamodb        = "dynamodb.${local.region}.amazonaws.com"
  kms_via_s3              = "s3.${local.region}.amazonaws.com"
  table_and_index_arns    = [var.table_arn, "${var.table_arn}/index/*"]
  runner_task_definitions = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.runner_family}:*"
  cluster_tasks           = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.cluster_name}/*"

  # Where sandboxes call back: the protected public URL (CloudFront or the custom
  # domain), resolved by infra/region. The runner locks state with POST/DELETE, which
  # CloudFront passes; the execute-api endpoint would refuse it (no origin header).
  sandbox_api_url = var.sandbox_api_url

  kms_via_secretsmanager = "secretsmanager.${local.region}.amazonaws.com"
  peer_artifacts_bucket  = "${var.name}-artifacts-${local.account_id}-${var.peer_region}"
}
