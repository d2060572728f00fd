# terraform test (Terraform 1.9+: override_during) of modules/region with a mocked AWS
# provider: plans only, nothing is created and no AWS API is called. Run by
# scripts/check-infra from infra/region (the module's only caller).

mock_provider "aws" {
  # The provider still validates policy arguments as JSON: every generated policy is an
  # empty policy.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

override_data {
  target = data.aws_caller_identity.current
  values = {
    account_id = "123456789012"
  }
}

override_data {
  target = data.aws_partition.current
  values = {
    partition = "aws"
  }
}

override_data {
  target = data.aws_region.current
  values = {
    name = "eu-central-1"
  }
}

override_data {
  target = data.aws_availability_zones.pinned
  values = {
    names    = ["eu-central-1a", "eu-central-1b"]
    zone_ids = ["euc1-az1", "euc1-az2"]
  }
}

override_resource {
  target          = aws_eip.nat
  override_during = plan
  values = {
    public_ip = "203.0.113.10"
  }
}

variables {
  name                              = "envplane"
  table_name                        = "envplane"
  table_arn                         = "arn:aws:dynamodb:eu-central-1:123456789012:table/envplane"
  kms_key_arn                       = "arn:aws:kms:eu-central-1:123456789012:key/mrk-1"
  active                            = false
  home_region                       = "eu-west-1"
  peer_region                       = "eu-west-1"
  peer_kms_key_arn                  = "arn:aws:kms:eu-west-1:123456789012:key/mrk-1"
  artifact_replication              = true
  egress_ips                        = ["198.51.100.7", "203.0.113.10"]
  origin_secret_arn                 = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:envplane/origin-verify-AbCdEf"
  origin_domain_name                = ""
  origin_certificate_arn            = ""
  alarm_email_addresses             = []
  replication_latency_threshold_ms  = 60000
  deployments_age_threshold_seconds = 900
  function_packages = {
    api         = "tests/fixtures/bootstrap.zip"
    deployer    = "tests/fixtures/bootstrap.zip"
    task-events = "tests/fixtures/bootstrap.zip"
    reaper      = "tests/fixtures/bootstrap.zip"
    webhook     = "tests/fixtures/bootstrap.zip"
    reporter    = "tests/fixtures/bootstrap.zip"
  }
  function_memory_mb               = {}
  function_timeout_seconds         = {}
  function_reserved_concurrency    = {}
  log_level                        = "info"
  log_retention_days               = 365
  vpc_cidr                         = "10.41.0.0/16"
  availability_zone_ids            = ["euc1-az1", "euc1-az2"]
  enable_flow_logs                 = true
  runner_image                     = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/envplane-runner:0.1.0"
  runner_image_tag                 = "0.1.0"
  runner_cpu_architecture          = "ARM64"
  runner_cpu                       = 1024
  runner_memory_mb                 = 2048
  runner_ephemeral_storage_gib     = 20
  runner_tools_dir                 = ""
  runner_task_role_policy_arns     = []
  max_parallel_deployments         = 50
  deployment_quotas                = { log_bytes = 67108864, steps = 200, state_bytes = 67108864, plan_bytes = 67108864 }
  redrive_limit                    = 5
  queue_visibility_timeout_seconds = 30
  deployer_max_concurrency         = 5
  reaper_schedule                  = "rate(1 minute)"
  artifact_noncurrent_version_days = 90
  api_throttling_rate_limit        = 500
  api_throttling_burst_limit       = 1000
  sandbox_api_url                  = "https://d111111abcdef8.cloudfront.net"
  github_api_url                   = "https://api.github.com"
}

run "passive_region_triggers_are_off" {
  command = plan

  module {
    source = "../modules/region"
  }

  variables {
    active = false
  }

  assert {
    condition     = aws_lambda_event_source_mapping.deployer.enabled == false
    error_message = "A passive region's deployer must not consume the deployments queue."
  }

  assert {
    condition     = aws_lambda_event_source_mapping.reporter.enabled == false
    error_message = "A passive region's reporter must not consume the reports queue."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.reaper.state == "DISABLED" && aws_cloudwatch_event_rule.task_stopped.state == "DISABLED"
    error_message = "A passive region's reaper schedule and task-state rule must be DISABLED."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.key_deletion.state == "ENABLED"
    error_message = "The key-deletion alarm rule stays on in a passive region."
  }
}

run "active_region_triggers_are_on" {
  command = plan

  module {
    source = "../modules/region"
  }

  variables {
    active = true
  }

  assert {
    condition     = aws_lambda_event_source_mapping.deployer.enabled && aws_lambda_event_source_mapping.reporter.enabled
    error_message = "An active region's event source mappings must be enabled."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.reaper.state == "ENABLED" && aws_cloudwatch_event_rule.task_stopped.state == "ENABLED"
    error_message = "An active region's rules must be ENABLED."
  }
}

run "function_environment_contract" {
  command = plan

  module {
    source = "../modules/region"
  }

  assert {
    condition     = aws_lambda_function.function["api"].environment[0].variables["ENVPLANE_EGRESS_IPS"] == "198.51.100.7,203.0.113.10"
    error_message = "ENVPLANE_EGRESS_IPS must be both regions' NAT addresses, deduplicated, sorted, comma-joined."
  }

  assert {
    condition = alltrue([
      for function in ["api", "deployer", "task-events", "reaper", "webhook", "reporter"] :
      aws_lambda_function.function[function].environment[0].variables["ENVPLANE_REGION"] == "eu-central-1" &&
      aws_lambda_function.function[function].environment[0].variables["ENVPLANE_HOME_REGION"] == "eu-west-1" &&
      !contains(keys(aws_lambda_function.function[function].environment[0].variables), "ENVPLANE_REGION_ROLE")
    ])
    error_message = "Every function gets ENVPLANE_REGION and ENVPLANE_HOME_REGION, and none ENVPLANE_REGION_ROLE."
  }

  assert {
    condition = alltrue([
      for function in ["api", "webhook"] :
      aws_lambda_function.function[function].environment[0].variables["ENVPLANE_ORIGIN_SECRET_ARN"] == "arn:aws:secretsmanager:eu-central-1:123456789012:secret:envplane/origin-verify-AbCdEf"
    ])
    error_message = "api and webhook read this region's replica of the origin secret."
  }

  assert {
    condition = alltrue([
      for function in ["deployer", "task-events", "reaper", "reporter"] :
      !contains(keys(aws_lambda_function.function[function].environment[0].variables), "ENVPLANE_ORIGIN_SECRET_ARN") &&
      !contains(keys(aws_lambda_function.function[function].environment[0].variables), "ENVPLANE_EGRESS_IPS")
    ])
    error_message = "Only the api gets ENVPLANE_EGRESS_IPS, only api and webhook the origin secret."
  }

  assert {
    condition     = aws_lambda_function.function["deployer"].environment[0].variables["ENVPLANE_API_URL"] == "https://d111111abcdef8.cloudfront.net"
    error_message = "ENVPLANE_API_URL is the protected public URL, not the execute-api endpoint."
  }

  assert {
    condition     = aws_lambda_function.function["api"].environment[0].variables["ENVPLANE_KMS_KEY_ID"] == "arn:aws:kms:eu-central-1:123456789012:key/mrk-1"
    error_message = "Each region uses its own copy of the multi-region key."
  }
}

run "sandbox_task_is_locked_down" {
  command = plan

  module {
    source = "../modules/region"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].readonlyRootFilesystem == true
    error_message = "The runner's root file system must be read-only."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].user == "10001" && jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].privileged == false
    error_message = "The runner runs as uid 10001, unprivileged."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].linuxParameters.capabilities.drop == ["ALL"]
    error_message = "The runner drops every Linux capability."
  }

  assert {
    condition = toset([
      for mount in jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].mountPoints : mount.containerPath
    ]) == toset(["/work", "/tmp"])
    error_message = "/work and /tmp are the writable scratch volumes."
  }
}

run "artifacts_replicate_to_the_other_region" {
  command = plan

  module {
    source = "../modules/region"
  }

  assert {
    condition     = aws_s3_bucket_replication_configuration.artifacts[0].rule[0].destination[0].bucket == "arn:aws:s3:::envplane-artifacts-123456789012-eu-west-1"
    error_message = "The artifacts bucket replicates to the other region's artifacts bucket."
  }

  assert {
    condition     = aws_s3_bucket_replication_configuration.artifacts[0].rule[0].destination[0].encryption_configuration[0].replica_kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/mrk-1"
    error_message = "Replicas are encrypted with the destination region's key."
  }

  assert {
    condition     = aws_s3_bucket_replication_configuration.artifacts[0].rule[0].destination[0].replication_time[0].time[0].minutes == 15
    error_message = "Replication time control: 15 minutes."
  }
}

run "no_replication_before_the_peer_bucket_exists" {
  command = plan

  module {
    source = "../modules/region"
  }

  variables {
    artifact_replication = false
  }

  assert {
    condition     = length(aws_s3_bucket_replication_configuration.artifacts) == 0
    error_message = "No replication before the other region's bucket exists."
  }
}
