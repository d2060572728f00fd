# One platform region (modules/region) with its own state. See providers.tf for how it is
# applied and README.md for the order of a deploy from zero.

locals {
  tags = merge(
    {
      Project   = "envplane"
      ManagedBy = "terraform"
    },
    var.tags,
  )

  peer_region = var.regions[0] == var.region ? var.regions[1] : var.regions[0]

  functions          = ["api", "deployer", "task-events", "reaper", "webhook", "reporter"]
  lambda_package_dir = var.lambda_package_dir != "" ? var.lambda_package_dir : "${path.root}/../../target/lambda"
  function_packages = merge(
    { for function in local.functions : function => "${local.lambda_package_dir}/${function}/bootstrap.zip" },
    var.function_packages,
  )

  origin_certificate_arn = var.origin_certificate_arn != "" ? var.origin_certificate_arn : lookup(var.origin_certificate_arns, var.region, "")

  # ENVPLANE_API_URL: the protected public URL, never the execute-api endpoint. Before the
  # edge exists (the first pass of a deploy from zero, both regions passive) it is not
  # known yet: a placeholder that cannot resolve stands in, and nothing invokes a passive
  # region's dispatching functions meanwhile. An active region refuses to plan without it.
  resolved_api_url = var.sandbox_api_url != "" ? var.sandbox_api_url : var.public_api_url
  api_url          = local.resolved_api_url != "" ? local.resolved_api_url : "https://public-url-pending.invalid"

  # Checks Terraform 1.0 can make without preconditions: tobool() of a sentence fails
  # the plan with that sentence.
  checks = [
    contains(var.regions, var.region) ? true : tobool("region ${var.region} is not one of the platform regions ${join(", ", var.regions)} (global.auto.tfvars.json)"),
    terraform.workspace == "default" || terraform.workspace == var.region ? true : tobool("workspace ${terraform.workspace} holds another region's state than ${var.region}: terraform workspace select ${var.region}"),
    !var.active || local.resolved_api_url != "" ? true : tobool("an active region needs public_api_url (apply infra/global with both regions reported, then refresh global.auto.tfvars.json)"),
    var.origin_domain_name == "" || local.origin_certificate_arn != "" ? true : tobool("origin_domain_name ${var.origin_domain_name} needs a certificate in ${var.region}: origin_certificate_arns"),
  ]
}

module "region" {
  source = "../modules/region"

  name        = var.name
  table_name  = var.table_name
  table_arn   = var.table_arns[var.region]
  kms_key_arn = var.kms_key_arns[var.region]

  active               = var.active && alltrue(local.checks)
  home_region          = var.home_region
  peer_region          = local.peer_region
  peer_kms_key_arn     = var.kms_key_arns[local.peer_region]
  artifact_replication = var.artifact_replication
  egress_ips           = var.egress_ips

  origin_secret_arn      = var.origin_secret_arns[var.region]
  origin_domain_name     = var.origin_domain_name
  origin_certificate_arn = local.origin_certificate_arn

  alarm_email_addresses             = var.alarm_email_addresses
  replication_latency_threshold_ms  = var.replication_latency_threshold_ms
  deployments_age_threshold_seconds = var.deployments_age_threshold_seconds

  function_packages             = local.function_packages
  function_memory_mb            = var.function_memory_mb
  function_timeout_seconds      = var.function_timeout_seconds
  function_reserved_concurrency = var.function_reserved_concurrency
  log_level                     = var.log_level
  log_retention_days            = var.log_retention_days

  vpc_cidr              = var.vpc_cidrs[var.region]
  availability_zone_ids = var.availability_zone_ids[var.region]
  enable_flow_logs      = var.enable_flow_logs

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

  artifact_noncurrent_version_days = var.artifact_noncurrent_version_days

  api_throttling_rate_limit  = var.api_throttling_rate_limit
  api_throttling_burst_limit = var.api_throttling_burst_limit
  sandbox_api_url            = local.api_url
  github_api_url             = var.github_api_url
}
