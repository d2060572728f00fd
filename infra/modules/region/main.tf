# One region's platform: the sandboxes' network, the artifacts bucket, the deployments
# queue, the ECS cluster and runner task definition, the four functions with their
# triggers, and the HTTP API. Instantiated for the active region only (see README.md:
# the code has no "active region" switch yet, so a passive region must not run these).
# Nothing in it is tied to one region: IAM role names (account-wide) carry the region,
# so a second instance for the passive region would not collide.

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

  # Where sandboxes call back. Not the CloudFront URL by default: CloudFront answers
  # Terraform's LOCK/UNLOCK state-backend methods with 403 (README.md, "Status").
  sandbox_api_url = var.sandbox_api_url != "" ? var.sandbox_api_url : aws_apigatewayv2_api.main.api_endpoint
}
