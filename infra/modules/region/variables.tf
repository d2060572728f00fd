# The root module documents each of these in detail (infra/variables.tf); defaults live
# there, so this module takes every input explicitly.

variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

# ---- the shared data plane (created in the root module) ---------------------------------

variable "table_name" {
  description = "The DynamoDB table (ENVPLANE_TABLE_NAME)."
  type        = string
}

variable "table_arn" {
  description = "ARN of the DynamoDB table in this region."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key in this region (ENVPLANE_KMS_KEY_ID): the multi-region key or its replica. It also encrypts every log group, the alarm topic, the ECR repository and the artifacts bucket."
  type        = string
}

# ---- the two regions ----------------------------------------------------------------------------

variable "active" {
  description = "Whether this region dispatches: drives the deployer's and the reporter's SQS event source mappings (enabled) and the EventBridge rules of the reaper schedule and the ECS task-state events (ENABLED/DISABLED). The table's active-region item is what the code obeys; this keeps a passive region's triggers quiet."
  type        = bool
}

variable "home_region" {
  description = "ENVPLANE_HOME_REGION: the primary region (the one active until the first failover)."
  type        = string
}

variable "peer_region" {
  description = "The other region of the pair (artifacts replication destination, DynamoDB ReceivingRegion of the replication-latency alarm)."
  type        = string
}

variable "peer_kms_key_arn" {
  description = "The KMS key (multi-region key or replica) in peer_region: replicas of the artifacts are encrypted with it."
  type        = string
}

variable "artifact_replication" {
  description = "Replicate the artifacts bucket to the peer region's artifacts bucket (which must exist: false on the very first apply of a deploy from zero)."
  type        = bool
}

variable "egress_ips" {
  description = "Egress addresses of the platform known from elsewhere (the other region's NAT Elastic IPs, from its own state). ENVPLANE_EGRESS_IPS of the api is these plus this region's own, deduplicated and sorted."
  type        = list(string)
}

variable "origin_secret_arn" {
  description = "ENVPLANE_ORIGIN_SECRET_ARN of the api and webhook: this region's copy of the Secrets Manager secret whose value CloudFront sends as x-envplane-origin."
  type        = string
}

variable "origin_domain_name" {
  description = "The Route 53 failover name CloudFront uses as origin (origin.<domain>): an API Gateway custom domain of this name is created in this region when it is not empty."
  type        = string
}

variable "origin_certificate_arn" {
  description = "ACM certificate in this region covering origin_domain_name (needed when origin_domain_name is set)."
  type        = string
}

variable "alarm_email_addresses" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
}

variable "replication_latency_threshold_ms" {
  description = "Alarm when the DynamoDB replication latency towards the peer region stays above this (milliseconds, average over 5 minutes)."
  type        = number
}

variable "deployments_age_threshold_seconds" {
  description = "Alarm when the oldest message of the deployments queue is older than this (seconds)."
  type        = number
}

# ---- functions -------------------------------------------------------------------------------

variable "function_packages" {
  description = "Zip path per function: api, deployer, task-events, reaper."
  type        = map(string)
}

variable "function_memory_mb" {
  description = "Memory overrides per function."
  type        = map(number)
}

variable "function_timeout_seconds" {
  description = "Timeout overrides per function."
  type        = map(number)
}

variable "function_reserved_concurrency" {
  description = "Reserved concurrency overrides per function (-1: none)."
  type        = map(number)
}

variable "log_level" {
  description = "RUST_LOG of every function."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the log groups."
  type        = number
}

# ---- network -----------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the sandboxes' VPC."
  type        = string
}

variable "availability_zone_ids" {
  description = "Availability zone IDs (e.g. euw1-az1), one public subnet + NAT gateway + Elastic IP + private subnet each. IDs, not names: names are shuffled per account, IDs are the same physical zone everywhere."
  type        = list(string)
}

variable "enable_flow_logs" {
  description = "VPC flow logs to CloudWatch Logs."
  type        = bool
}

# ---- sandboxes -----------------------------------------------------------------------------------

variable "runner_image" {
  description = "Runner image reference; empty: the created ECR repository at runner_image_tag."
  type        = string
}

variable "runner_image_tag" {
  description = "Tag in the created ECR repository."
  type        = string
}

variable "runner_cpu_architecture" {
  description = "ARM64 or X86_64."
  type        = string
}

variable "runner_cpu" {
  description = "Fargate CPU units of a sandbox."
  type        = number
}

variable "runner_memory_mb" {
  description = "Fargate memory of a sandbox (MiB)."
  type        = number
}

variable "runner_ephemeral_storage_gib" {
  description = "Ephemeral storage of a sandbox (GiB; 20 adds no setting)."
  type        = number
}

variable "runner_tools_dir" {
  description = "ENVPLANE_TOOLS_DIR in the runner container; empty: unset."
  type        = string
}

variable "runner_task_role_policy_arns" {
  description = "Managed policies attached to the sandboxes' task role (none by default)."
  type        = list(string)
}

variable "max_parallel_deployments" {
  description = "ENVPLANE_MAX_PARALLEL_DEPLOYMENTS."
  type        = number
}

variable "deployment_quotas" {
  description = "ENVPLANE_QUOTA_LOG_BYTES, _STEPS, _STATE_BYTES and _PLAN_BYTES."
  type = object({
    log_bytes   = number
    steps       = number
    state_bytes = number
    plan_bytes  = number
  })
}

# ---- queue and schedules ------------------------------------------------------------------------

variable "redrive_limit" {
  description = "maxReceiveCount of the deployments queue = ENVPLANE_REDRIVE_LIMIT."
  type        = number
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the deployments queue (raised to the deployer's timeout when lower)."
  type        = number
}

variable "deployer_max_concurrency" {
  description = "Maximum concurrency of the deployer's event source mapping."
  type        = number
}

variable "reaper_schedule" {
  description = "Schedule expression of the reaper."
  type        = string
}

# ---- storage -------------------------------------------------------------------------------------

variable "artifact_noncurrent_version_days" {
  description = "Days before a noncurrent object version in the artifacts bucket expires."
  type        = number
}

# ---- API -----------------------------------------------------------------------------------------

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second of the HTTP API stage."
  type        = number
}

variable "api_throttling_burst_limit" {
  description = "Burst limit of the HTTP API stage."
  type        = number
}

variable "sandbox_api_url" {
  description = "ENVPLANE_API_URL: the protected public URL (custom domain or CloudFront) resolved by the root; never the execute-api endpoint."
  type        = string
}

variable "github_api_url" {
  description = "GitHub's REST API (ENVPLANE_GITHUB_API_URL)."
  type        = string
}
