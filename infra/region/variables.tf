# ---- which region, and its role ----------------------------------------------------------------

variable "region" {
  description = "The region this state deploys (one workspace per region, named after it)."
  type        = string
}

variable "active" {
  description = "Whether this region's triggers run (deployer and reporter event source mappings, reaper schedule, ECS task-state rule). True in exactly one region: the home region until a failover (envplane-ops failover, then apply true here and false in the other when it is reachable)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ---- from infra/global (global.auto.tfvars.json) ---------------------------------------------------

variable "name" {
  description = "Prefix of every resource name; the table's name (region_tfvars.name)."
  type        = string
  default     = "envplane"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "The name must be 2 to 20 characters: a lower-case letter, then lower-case letters, digits and hyphens."
  }
}

variable "home_region" {
  description = "ENVPLANE_HOME_REGION: the primary region (region_tfvars.home_region)."
  type        = string
}

variable "regions" {
  description = "The two platform regions, home first (region_tfvars.regions)."
  type        = list(string)

  validation {
    condition     = length(var.regions) == 2 && var.regions[0] != var.regions[1]
    error_message = "Exactly two different regions."
  }
}

variable "table_name" {
  description = "ENVPLANE_TABLE_NAME (region_tfvars.table_name)."
  type        = string
}

variable "table_arns" {
  description = "The table's ARN in each region (region_tfvars.table_arns)."
  type        = map(string)
}

variable "kms_key_arns" {
  description = "The platform key's ARN in each region (region_tfvars.kms_key_arns)."
  type        = map(string)
}

variable "origin_secret_arns" {
  description = "The origin-verify secret's ARN in each region (region_tfvars.origin_secret_arns)."
  type        = map(string)
}

variable "origin_domain_name" {
  description = "origin.<domain> when infra/global manages DNS, else empty (region_tfvars.origin_domain_name)."
  type        = string
  default     = ""
}

variable "public_api_url" {
  description = "The protected public URL: custom domain or CloudFront (region_tfvars.public_api_url). Empty until the edge exists (first pass of a deploy from zero)."
  type        = string
  default     = ""
}

variable "egress_ips" {
  description = "Egress addresses of the platform reported to infra/global (region_tfvars.egress_ips: both regions' NAT addresses once both were applied). ENVPLANE_EGRESS_IPS is these plus this region's own, sorted: the other region's addresses come from its own state, through infra/global."
  type        = list(string)
  default     = []
}

# ---- this region ----------------------------------------------------------------------------------

variable "origin_certificate_arn" {
  description = "ACM certificate in this region for origin_domain_name (a map by region is easier: origin_certificate_arns)."
  type        = string
  default     = ""
}

variable "origin_certificate_arns" {
  description = "ACM certificate for origin_domain_name per region, e.g. { eu-west-1 = \"arn:...\", eu-central-1 = \"arn:...\" }; origin_certificate_arn wins when set."
  type        = map(string)
  default     = {}
}

variable "availability_zone_ids" {
  description = "Availability zone IDs per region: one public subnet, NAT gateway, Elastic IP and private subnet each. Pinned by ID so the egress addresses stay in the same physical zones."
  type        = map(list(string))
  default = {
    eu-west-1    = ["euw1-az1", "euw1-az2"]
    eu-central-1 = ["euc1-az1", "euc1-az2"]
    us-east-1    = ["use1-az1", "use1-az2"]
    us-west-2    = ["usw2-az1", "usw2-az2"]
  }
}

variable "vpc_cidrs" {
  description = "CIDR of the sandboxes' VPC per region (distinct, should the two ever be peered). Public subnets take /24s at its start, private ones /20s after them."
  type        = map(string)
  default = {
    eu-west-1    = "10.40.0.0/16"
    eu-central-1 = "10.41.0.0/16"
    us-east-1    = "10.42.0.0/16"
    us-west-2    = "10.43.0.0/16"
  }
}

variable "artifact_replication" {
  description = "Replicate the artifacts bucket to the other region's (which must exist: false on the first pass of a deploy from zero)."
  type        = bool
  default     = true
}

variable "alarm_email_addresses" {
  description = "E-mail addresses subscribed to this region's alarm topic."
  type        = list(string)
  default     = []
}

variable "replication_latency_threshold_ms" {
  description = "Alarm threshold of the table's replication latency to the other region (ms)."
  type        = number
  default     = 60000
}

variable "deployments_age_threshold_seconds" {
  description = "Alarm threshold of the deployments queue's oldest message (seconds)."
  type        = number
  default     = 900
}

# ---- build outputs -------------------------------------------------------------------------

variable "lambda_package_dir" {
  description = "Directory holding `<function>/bootstrap.zip` as scripts/build-lambdas writes them. Empty means ../../target/lambda relative to this directory."
  type        = string
  default     = ""
}

variable "function_packages" {
  description = "Per-function override of the zip path, e.g. { api = \"/builds/api.zip\" }."
  type        = map(string)
  default     = {}
}

variable "runner_image" {
  description = "Full image reference of the runner. Empty means this region's ECR repository (filled by replication from the home region) at runner_image_tag."
  type        = string
  default     = ""
}

variable "runner_image_tag" {
  description = "Tag of the runner image (runner/Dockerfile) in the ECR repository. Tags are immutable: push a new tag per release, in the home region."
  type        = string
  default     = "0.1.0"
}

# ---- sandboxes -----------------------------------------------------------------------------

variable "enable_flow_logs" {
  description = "VPC flow logs of the sandboxes' network to CloudWatch Logs."
  type        = bool
  default     = true
}

variable "runner_cpu_architecture" {
  description = "CPU architecture of the runner task: ARM64 or X86_64. The image must be built for it."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.runner_cpu_architecture)
    error_message = "The runner CPU architecture must be ARM64 or X86_64."
  }
}

variable "runner_cpu" {
  description = "Fargate CPU units of one sandbox."
  type        = number
  default     = 1024
}

variable "runner_memory_mb" {
  description = "Fargate memory (MiB) of one sandbox."
  type        = number
  default     = 2048
}

variable "runner_ephemeral_storage_gib" {
  description = "Ephemeral storage of one sandbox in GiB (backs /work and /tmp; 20 adds no setting; 21 to 200 otherwise)."
  type        = number
  default     = 20

  validation {
    condition     = var.runner_ephemeral_storage_gib >= 20 && var.runner_ephemeral_storage_gib <= 200
    error_message = "Fargate ephemeral storage is 20 to 200 GiB."
  }
}

variable "runner_tools_dir" {
  description = "ENVPLANE_TOOLS_DIR in the runner container. Empty: unset (the runner downloads and verifies the Terraform version a job asks for)."
  type        = string
  default     = ""
}

variable "runner_task_role_policy_arns" {
  description = "Managed policies to attach to the sandboxes' task role (none by default)."
  type        = list(string)
  default     = []
}

variable "max_parallel_deployments" {
  description = "ENVPLANE_MAX_PARALLEL_DEPLOYMENTS."
  type        = number
  default     = 50
}

variable "deployment_quotas" {
  description = "ENVPLANE_QUOTA_*: log bytes, steps, state bytes, plan bytes of one deployment."
  type = object({
    log_bytes   = number
    steps       = number
    state_bytes = number
    plan_bytes  = number
  })
  default = {
    log_bytes   = 67108864
    steps       = 200
    state_bytes = 67108864
    plan_bytes  = 67108864
  }

  validation {
    condition     = alltrue([for quota in values(var.deployment_quotas) : quota >= 1 && floor(quota) == quota])
    error_message = "Every quota is a whole number of at least 1."
  }
}

# ---- queue ---------------------------------------------------------------------------------

variable "redrive_limit" {
  description = "maxReceiveCount of the deployments queue = ENVPLANE_REDRIVE_LIMIT."
  type        = number
  default     = 5

  validation {
    condition     = var.redrive_limit >= 1 && var.redrive_limit <= 1000
    error_message = "SQS accepts a maxReceiveCount of 1 to 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the deployments queue (raised to the deployer's timeout when lower)."
  type        = number
  default     = 30
}

variable "deployer_max_concurrency" {
  description = "Most deployer invocations the SQS event source mapping runs at once (2 to 1000)."
  type        = number
  default     = 5

  validation {
    condition     = var.deployer_max_concurrency >= 2 && var.deployer_max_concurrency <= 1000
    error_message = "The event source mapping's maximum concurrency is 2 to 1000."
  }
}

variable "reaper_schedule" {
  description = "EventBridge schedule expression of the reaper."
  type        = string
  default     = "rate(1 minute)"
}

# ---- functions -----------------------------------------------------------------------------

variable "function_memory_mb" {
  description = "Memory per function, merged over { api = 512, others 256 }."
  type        = map(number)
  default     = {}
}

variable "function_timeout_seconds" {
  description = "Timeout per function, merged over { api = 29, deployer = 25, task-events = 30, reaper = 300, webhook = 29, reporter = 180 }."
  type        = map(number)
  default     = {}
}

variable "function_reserved_concurrency" {
  description = "Reserved concurrency per function, merged over { api = 50, deployer = max(10, deployer_max_concurrency), task-events = 10, reaper = 1, webhook = 20, reporter = 5 } (-1: none). The account's concurrency limit must exceed the total by 100."
  type        = map(number)
  default     = {}
}

variable "log_level" {
  description = "RUST_LOG of every function."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group this root creates."
  type        = number
  default     = 365
}

variable "artifact_noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept in the artifacts bucket."
  type        = number
  default     = 90
}

variable "github_api_url" {
  description = "GitHub's REST API: https://api.github.com or https://<host>/api/v3."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://", var.github_api_url))
    error_message = "The github_api_url must be an https:// URL."
  }
}

# ---- API ----------------------------------------------------------------------------------

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second of the HTTP API stage."
  type        = number
  default     = 500
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests of the HTTP API stage."
  type        = number
  default     = 1000
}

variable "sandbox_api_url" {
  description = "ENVPLANE_API_URL override. Empty: public_api_url (the protected public URL). Never the execute-api endpoint: it refuses requests without CloudFront's origin header."
  type        = string
  default     = ""

  validation {
    condition     = var.sandbox_api_url == "" || can(regex("^https://", var.sandbox_api_url))
    error_message = "The sandbox API URL must be empty or start with https://."
  }
}
