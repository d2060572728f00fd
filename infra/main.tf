# envplane, deployed into one AWS account across two regions, active-passive.
#
#   this file        the data plane both regions share: the multi-region KMS key and the
#                    DynamoDB global table (replica in the secondary region)
#   modules/region   everything else, in the primary (active) region
#   modules/edge     CloudFront + WAF in front of the HTTP API (us-east-1)

locals {
  tags = merge(
    {
      Project   = "envplane"
      ManagedBy = "terraform"
    },
    var.tags,
  )

  functions = ["api", "deployer", "task-events", "reaper", "webhook", "reporter"]

  lambda_package_dir = var.lambda_package_dir != "" ? var.lambda_package_dir : "${path.root}/../target/lambda"

  function_packages = merge(
    { for function in local.functions : function => "${local.lambda_package_dir}/${function}/bootstrap.zip" },
    var.function_packages,
  )
}

data "aws_caller_identity" "primary" {
  provider = aws.primary
}

data "aws_partition" "primary" {
  provider = aws.primary
}

# ---- KMS: one multi-region customer-managed key ---------------------------------------------
#
# It encrypts the table (and its replica, with the replica key), wraps the per-organization
# data keys of the key ring (GenerateDataKey/Decrypt with the encryption context
# {"envplane:organization": <org id>}) and is the SSE-KMS key of the artifacts bucket.
# A multi-region key keeps the same key material in the secondary region, so a data key
# wrapped in the primary region can be unwrapped there after a failover.
#
# The key policy only delegates to IAM (the account root): every principal that uses the
# key gets it from an IAM policy in modules/region, scoped to what it calls.

data "aws_iam_policy_document" "key" {
  provider = aws.primary

  statement {
    sid       = "DelegateToIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.primary.partition}:iam::${data.aws_caller_identity.primary.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "main" {
  provider = aws.primary

  description             = "${var.name}: table encryption, per-organization data keys, artifacts SSE-KMS"
  multi_region            = true
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "main" {
  provider = aws.primary

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

resource "aws_kms_replica_key" "secondary" {
  provider = aws.secondary

  description             = "${var.name}: replica of the platform key (table replica; data keys after a failover)"
  primary_key_arn         = aws_kms_key.main.arn
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "secondary" {
  provider = aws.secondary

  name          = "alias/${var.name}"
  target_key_id = aws_kms_replica_key.secondary.key_id
}

# ---- DynamoDB: the single table, as a global table -------------------------------------------
#
# Mirrors shared/aws/src/dynamodb.rs `create_table_with_key` and docs/storage.md exactly:
#   PK (S) / SK (S)
#   GSI1: GSI1PK (S) / GSI1SK (S), projection ALL  (records with a parent)
#   GSI2: GSI2PK (S) / GSI2SK (S), projection ALL  (records with an index key)
# TTL on `expires_at` (Unix seconds): only records that may be forgotten carry it (handled
# webhook deliveries); nothing the platform decides by reads it, expiry of locks and
# tokens goes through the Clock port.
# Streams (NEW_AND_OLD_IMAGES) are what global tables version 2019.11.21 replicate from.

resource "aws_dynamodb_table" "main" {
  provider = aws.primary

  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "PK"
  range_key                   = "SK"
  stream_enabled              = true
  stream_view_type            = "NEW_AND_OLD_IMAGES"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "PK"
    type = "S"
  }

  attribute {
    name = "SK"
    type = "S"
  }

  attribute {
    name = "GSI1PK"
    type = "S"
  }

  attribute {
    name = "GSI1SK"
    type = "S"
  }

  attribute {
    name = "GSI2PK"
    type = "S"
  }

  attribute {
    name = "GSI2SK"
    type = "S"
  }

  global_secondary_index {
    name            = "GSI1"
    hash_key        = "GSI1PK"
    range_key       = "GSI1SK"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "GSI2"
    hash_key        = "GSI2PK"
    range_key       = "GSI2SK"
    projection_type = "ALL"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }

  point_in_time_recovery {
    enabled = true
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  replica {
    region_name            = var.secondary_region
    kms_key_arn            = aws_kms_replica_key.secondary.arn
    point_in_time_recovery = true
    propagate_tags         = true
  }
}

# ---- the active region --------------------------------------------------------------------------

module "primary" {
  source = "./modules/region"

  providers = {
    aws = aws.primary
  }

  name        = var.name
  table_name  = aws_dynamodb_table.main.name
  table_arn   = aws_dynamodb_table.main.arn
  kms_key_arn = aws_kms_key.main.arn

  function_packages             = local.function_packages
  function_memory_mb            = var.function_memory_mb
  function_timeout_seconds      = var.function_timeout_seconds
  function_reserved_concurrency = var.function_reserved_concurrency
  log_level                     = var.log_level
  log_retention_days            = var.log_retention_days

  vpc_cidr                = var.vpc_cidr
  availability_zone_count = var.availability_zone_count
  enable_flow_logs        = var.enable_flow_logs

  runner_image                 = var.runner_image
  runner_image_tag             = var.runner_image_tag
  runner_cpu_architecture      = var.runner_cpu_architecture
  runner_cpu                   = var.runner_cpu
  runner_memory_mb             = var.runner_memory_mb
  runner_ephemeral_storage_gib = var.runner_ephemeral_storage_gib
  runner_tools_dir             = var.runner_tools_dir
  runner_task_role_policy_arns = var.runner_task_role_policy_arns
  max_parallel_deployments     = var.max_parallel_deployments
  deployment_quotas            = var.deployment_quotas

  redrive_limit                    = var.redrive_limit
  queue_visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  deployer_max_concurrency         = var.deployer_max_concurrency
  reaper_schedule                  = var.reaper_schedule
  region_role                      = var.region_role

  artifact_noncurrent_version_days = var.artifact_noncurrent_version_days

  api_throttling_rate_limit  = var.api_throttling_rate_limit
  api_throttling_burst_limit = var.api_throttling_burst_limit
  sandbox_api_url            = var.sandbox_api_url
  github_api_url             = var.github_api_url
}

# ---- the public entry: CloudFront + WAF -----------------------------------------------------------

module "edge" {
  source = "./modules/edge"
  count  = var.enable_edge ? 1 : 0

  providers = {
    aws = aws.edge
  }

  name                  = var.name
  api_endpoint          = module.primary.api_endpoint
  domain_name           = var.api_domain_name
  certificate_arn       = var.api_certificate_arn
  price_class           = var.cloudfront_price_class
  rate_limit            = var.waf_rate_limit
  common_rule_overrides = var.waf_common_rule_overrides
  log_retention_days    = var.log_retention_days
  sandbox_egress_ips    = module.primary.egress_ips
}
